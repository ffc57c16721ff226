"""lusd's tests, one folder per area of the package; shared helpers in support/."""
