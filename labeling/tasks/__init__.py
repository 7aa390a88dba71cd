"""Task types: what differs between kinds of labeling work (one class per image today; boxes
next). ``base.TaskType`` is the interface, ``registry`` finds one by name, ``classification``
is the first implementation."""
