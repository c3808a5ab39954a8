"""The four axes of an attack (DESIGN section 3a) as small reusable parts.

- :mod:`~attacks.parts.triggers`: how pixels change (patch stamped at per-image positions,
  full-image blend, SIG stripes, WaNet warp, low-frequency wavelet blend);
- :mod:`~attacks.parts.placements`: where a patch goes (fixed, anywhere inside one
  non-victim region, within a distance band of the victim, on one instance);
- :mod:`~attacks.parts.labels`: what poisoned pixels become (victim -> target, all-to-all,
  one instance -> target, conditional, random pixel relabelling on top);
- :mod:`~attacks.parts.selection`: which images may be poisoned (those containing some
  classes, those where two classes co-occur);
- :mod:`~attacks.parts.cover`: cover images, triggered but kept at their true labels
  (selection and label axes; Adap-Blend / Adap-Patch);
- :mod:`~attacks.parts.partial`: partial training triggers (a random share of a pieced blend,
  one of several patches) whose whole is the test trigger.

Every part is a plain function on batched tensors, on any device. Scene-dependent draws
(a position, an instance) are seeded per image by :mod:`~attacks.parts.draws` from the
attack's seed and the image's own annotation, so they do not depend on how the harness
batches images and the label rule can recompute the placement the trigger used.
"""
