"""CPU-bound compute on the process lane: 202 Accepted, then poll the task's status."""
