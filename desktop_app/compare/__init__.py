"""Side by side: comparing saved runs and sweeping one parameter over seeds."""
