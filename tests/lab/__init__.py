"""The shapes model's training (needs the checkout's shapes_lab/)."""
