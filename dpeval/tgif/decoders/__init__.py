"""Mask decoders for the fusion localizer beyond SegFormer's All-MLP head.

``diffiml``: a score-based diffusion decoder over mask latents (DiffIML, ICMR 2026), built from

- `lightvae.LightVAE`: the mask autoencoder whose 4-channel latents are diffused;
- `edges.edge_map`: the boundary bands whose latents are diffused beside the mask's;
- `condition.ConditionFuser`: the localizer's four fused feature maps -> one condition map;
- `diffiml.DiffIMLDecoder`: the conditional x0-denoiser, its training loss and DDIM sampling;
- `lightvae_train.train_lightvae`: stage 1, the LightVAE's own training loop.
"""
