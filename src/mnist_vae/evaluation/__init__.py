"""Measuring trained models: ELBO terms, importance-weighted NLL, the latent code, sample quality."""
