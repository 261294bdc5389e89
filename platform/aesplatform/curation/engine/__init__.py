"""The filtering engine: pure Pillow/OpenCV/PyTorch/open_clip/faiss code, no Django import anywhere.

It turns image files into signals (CLIP zero-shot probabilities and embeddings, faces, blur, exposure), groups
near duplicates with an approximate nearest-neighbour index, and turns signals plus thresholds into proposals.
The curation services feed it rows and write its results back; bench/filter.py runs it alone.

Modules: ``prompts`` (the versioned prompt set), ``proposals`` (thresholds -> keep/reject, reasons, uncertainty),
``signals`` (decode + face/blur/exposure), ``clip`` (model by name + local checkpoint), ``pipeline`` (batched
DataLoader pipeline, CPU and CUDA paths), ``dedup`` (exact and near-duplicate groups).
"""
