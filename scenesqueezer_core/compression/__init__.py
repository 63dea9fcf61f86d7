"""Scene compression: SceneMap -> CompressedMap (``compress``), and training of the DSQ quantizers
(``quantizer_training``, ``train_quantizer``). Point selection lives in ``scenesqueezer_core.selection``,
the map and quantizer models in ``scenesqueezer_core.maps``.
"""
