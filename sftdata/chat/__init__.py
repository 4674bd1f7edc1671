"""Chat templates, rendering and the loss-mask engine."""
