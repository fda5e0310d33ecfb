"""Pure tensor maths for CAMs (being written)."""
