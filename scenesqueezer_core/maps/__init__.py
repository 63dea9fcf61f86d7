"""The maps a localizer reads, and their files.

- ``scene_map``: SceneMap, the uncompressed map (frames, keypoints, descriptors, 3D points, tracks).
- ``compressed_map``: CompressedMap (.sqz), clusters of kept points with uint8 descriptor codes.
- ``mapfile``: the one container both are written in (versioned header, per-array checksums).
- ``quantizer`` / ``quantizer_file``: the DSQ models that decode a compressed map's codes, and their
  safetensors format; ``global_model``: the shipped global-descriptor model of compressed maps.
- ``database``: what the localizer reads from a map (``LocalizationDatabase``), the SceneMap adapter,
  and ``load_database``, which opens either kind of file.

Modules are imported by name (no re-exports here) so that reading a map header does not load torch.
"""
