"""Analytics: resampling, charging profiles, the vectorized detectors and the scheduled jobs."""
