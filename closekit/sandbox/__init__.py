"""The lab: runs scenarios on the real kernel in a helper process and returns Traces."""
