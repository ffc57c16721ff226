"""The shapes world and its shipped model's commands: world, oracle, edits, generate and demo."""
