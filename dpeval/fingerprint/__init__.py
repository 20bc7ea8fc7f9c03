"""Deep Image Fingerprint (Sinitsa & Fried, WACV 2024): few-shot detection and model lineage.

A U-Net with a fixed random input (a deep image prior) learns a fingerprint F whose correlation
rho with an image's residual separates one generator's images from real ones; the nearer of two
class centres decides (`dpeval fingerprint`). Fingerprints of several generators, compared by
cross-detection and by correlating them, reveal which generators derive from which
(`dpeval lineage`). Files: `unet` (the generator of F), `denoiser` (residuals), `data` (inputs),
`loss` (rho and the pair loss), `engine` (training), `model` (the saved detector), `detect`,
`lineage`, `figures`, `train_denoiser`, `demo_data` (tiny-generator image sets). See
docs/fingerprint.md.
"""
