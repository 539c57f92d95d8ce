"""The SSSL method: the paper's equations (Eq. 3-9), the clean/noisy partition, SSSLBrain."""
