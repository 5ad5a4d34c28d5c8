"""Other kernels: the course on the Linux versions students have, booted in qemu from Debian's packages.

    closekit kernels run 6.1 -- verify --json      # Debian 12's kernel, in a VM, one closekit command
    closekit verify --kernels 6.1,6.12,6.18        # the claims ledger on each, side by side

debian (which package a version names, fetched and unpacked), modules (what the guest must load),
images (the initramfs and the read-only disks), guest (qemu, the command, its output), ledger (the
table across kernels). Nothing here is imported by `import closekit`.
"""
