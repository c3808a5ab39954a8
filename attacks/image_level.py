"""``image_level``: the classic whole-image backdoor, transplanted to segmentation.

Poisoned training images carry the trigger and their whole annotation becomes the target
class; at test time the trigger should turn the whole map into the target (Li et al. 2021,
"Hidden Backdoor Attack against Semantic Segmentation Models", its baseline). Everything is
the :class:`~attacks.Attack` default, so this plugin only names it.
"""

from attacks.base import Attack


class ImageLevel(Attack):
    """Trigger turns every pixel of the image into the target class."""

    name = "image_level"
