"""The autoscaler: a pure policy, a lag monitor, a controller, and a simulator to try policies on."""
