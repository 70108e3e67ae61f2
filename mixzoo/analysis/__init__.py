"""What a fitted pair says: cluster posteriors and likelihoods, metrics, ArviZ summaries and plots."""
