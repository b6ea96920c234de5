"""The process lane: anyio worker processes and the trampoline inside them."""
