"""python -m closekit.recorded: re-record the traces of the scenarios some modes cannot run."""

from closekit.recorded import record

for path in record():
    print(f"wrote {path}")
