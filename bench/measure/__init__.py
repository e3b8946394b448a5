"""What the harness measures about one model at one input shape; one module per quantity."""
