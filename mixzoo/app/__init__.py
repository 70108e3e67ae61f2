"""The application layer: configurations, runs and run directories, restarts, the estimator, choosing K,
predictions and the command line."""
