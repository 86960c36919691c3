"""Evaluation metrics shared by the RS-IMLE trainer, the StyleGAN2-ADA patch and the analysis tools."""
