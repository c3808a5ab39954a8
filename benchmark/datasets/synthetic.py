"""``synthetic``: procedurally generated street scenes, the embedded default dataset.

Each scene has a sky above a random horizon, a skyline of buildings with window grids,
trees, a perspective road with lane markings between two sidewalks, poles, and 0-3 cars on
the road and 0-2 persons on the sidewalks. Cars and persons vary in size (with perspective),
colour and position, so a fine-grained attack has real objects of varying shape to hit;
instance ids are recorded for them. Generation is vectorised over the whole split (one tensor
op per layer, no per-image Python), deterministic from the seed, and takes about two seconds
for a thousand 64x64 images; with a cache folder (the runner's ``WORKDIR/datasets``) each
split is generated once and read back in milliseconds, so a finished cell costs no generation.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from benchmark.datasets import DatasetConfig, SegmentationDataset, Split, register
from benchmark.store import atomic_write_bytes, content_key, file_lock

log = logging.getLogger(__name__)

CLASS_NAMES = ("road", "sidewalk", "building", "vegetation", "sky", "pole", "car", "person")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, POLE, CAR, PERSON = range(len(CLASS_NAMES))
MAX_CARS = 3
MAX_PERSONS = 2
DEFAULT_TRAIN_SIZE = 2000
DEFAULT_TEST_SIZE = 300
GENERATOR_VERSION = 1
"""Part of every cached split's name: bump it whenever ``generate`` draws different scenes for
the same arguments, so that no cache of the old scenes is read back."""


class _Canvas:
    """Paints layers back to front onto a batch of label, instance and colour-index maps.

    Painting writes only small ``[N,H,W]`` maps; colours are looked up once at the end (one
    gather), which keeps generation at about a second for thousands of images.
    """

    def __init__(self, n: int, size: tuple[int, int], generator: torch.Generator) -> None:
        self.n, self.size, self.gen = n, size, generator
        height, width = size
        self.y = ((torch.arange(height, dtype=torch.float32) + 0.5) / height).view(1, height, 1)
        self.x = ((torch.arange(width, dtype=torch.float32) + 0.5) / width).view(1, 1, width)
        self.label = torch.full((n, height, width), SKY, dtype=torch.long)
        self.instance = torch.zeros(n, height, width, dtype=torch.int32)
        self.layer = torch.zeros(n, height, width, dtype=torch.long)  # 0 = the background
        self.palette: list[torch.Tensor] = [torch.zeros(n, 3)]

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        """Per-image random values shaped ``[N, *shape]``, broadcastable against ``[N,H,W]``."""
        return low + (high - low) * torch.rand(self.n, *shape, generator=self.gen)

    def colour(self, base: tuple[float, float, float], jitter: float) -> torch.Tensor:
        """A per-image colour ``[N,3]`` around ``base``."""
        shift = (torch.rand(self.n, 3, generator=self.gen) - 0.5) * 2 * jitter
        return (torch.tensor(base) + shift).clamp(0, 1)

    def paint(self, region: torch.Tensor, colour: torch.Tensor, label: int | None = None,
              instance: torch.Tensor | None = None) -> None:
        """Paint ``colour`` where ``region`` (bool, broadcast to [N,H,W]); set label and instance."""
        region = region.expand(self.n, *self.size)
        self.palette.append(colour)
        self.layer.masked_fill_(region, len(self.palette) - 1)
        if label is not None:
            self.label.masked_fill_(region, label)
        if instance is not None:
            self.instance = torch.where(region, instance.int(), self.instance)

    def render(self, background: torch.Tensor) -> torch.Tensor:
        """Float images ``[N,3,H,W]``: painted colours over ``background``."""
        palette = torch.stack(self.palette, dim=1)  # [N, layers, 3]
        painted = palette[torch.arange(self.n).view(-1, 1, 1), self.layer].permute(0, 3, 1, 2)
        return torch.where((self.layer > 0).unsqueeze(1), painted, background)


def generate(n: int, size: int | tuple[int, int], seed: int) -> Split:
    """Generate ``n`` scenes of ``size`` (a side, or ``(height, width)``) pixels,
    deterministically from ``seed``. Shapes are drawn in coordinates relative to each side,
    so a wide image shows the same kind of scene stretched."""
    size = (size, size) if isinstance(size, int) else size
    gen = torch.Generator().manual_seed(seed)
    c = _Canvas(n, size, gen)
    y, x = c.y, c.x

    # sky: a vertical gradient, lighter towards the horizon
    horizon = c.uniform(0.32, 0.48, 1, 1)
    sky_top, sky_low = c.colour((0.35, 0.55, 0.9), 0.1), c.colour((0.7, 0.8, 0.95), 0.05)
    sky = sky_top.view(n, 3, 1, 1) + (sky_low - sky_top).view(n, 3, 1, 1) * y.unsqueeze(1)

    # buildings: blocks standing on the horizon, each with a window grid
    for _ in range(6):
        centre, half = c.uniform(0.0, 1.0, 1, 1), c.uniform(0.06, 0.16, 1, 1)
        top = horizon - c.uniform(0.12, 0.4, 1, 1)
        block = ((x - centre).abs() < half) & (y > top) & (y < horizon + 0.02)
        wall = c.colour((0.55, 0.45, 0.4), 0.15)
        c.paint(block, wall, BUILDING)
        period = c.uniform(0.06, 0.1, 1, 1)
        windows = block & (torch.remainder(x - centre, period) < period * 0.45) & (
            torch.remainder(y - top, period) < period * 0.5) & (y > top + period * 0.5)
        c.paint(windows, wall * 0.45 + 0.1)

    # trees: round canopies on the horizon
    for _ in range(3):
        present = c.uniform(0, 1, 1, 1) < 0.7
        cx, cy, radius = c.uniform(0, 1, 1, 1), horizon - c.uniform(0.02, 0.12, 1, 1), c.uniform(0.05, 0.12, 1, 1)
        canopy = present & (((x - cx) ** 2 + ((y - cy) * 1.2) ** 2) < radius**2)
        c.paint(canopy, c.colour((0.2, 0.5, 0.2), 0.12), VEGETATION)

    # ground: perspective road between sidewalks, verge of grass beyond
    depth = ((y - horizon) / (1 - horizon)).clamp(min=0)  # 0 at the horizon, 1 at the bottom
    road_centre = c.uniform(0.4, 0.6, 1, 1)
    road_half = c.uniform(0.04, 0.08, 1, 1) + depth * c.uniform(0.3, 0.45, 1, 1)
    walk_half = road_half + 0.02 + depth * c.uniform(0.12, 0.22, 1, 1)
    ground = y >= horizon
    offset = (x - road_centre).abs()
    c.paint(ground, c.colour((0.3, 0.55, 0.25), 0.1), VEGETATION)
    c.paint(ground & (offset < walk_half), c.colour((0.72, 0.68, 0.6), 0.08), SIDEWALK)
    road_colour = c.colour((0.38, 0.38, 0.4), 0.06)
    c.paint(ground & (offset < road_half), road_colour, ROAD)
    dashes = torch.remainder(depth * 6 + c.uniform(0, 1, 1, 1), 1.0) < 0.5
    lane = ground & (offset < 0.005 + depth * 0.012) & dashes
    c.paint(lane, torch.full_like(road_colour, 0.92))

    # poles on the sidewalk, thin and tall
    for _ in range(2):
        present = c.uniform(0, 1, 1, 1) < 0.6
        foot = horizon + c.uniform(0.1, 0.5, 1, 1) * (1 - horizon)
        foot_depth = (foot - horizon) / (1 - horizon)
        side = torch.where(c.uniform(0, 1, 1, 1) < 0.5, -1.0, 1.0)
        px = road_centre + side * (0.04 + foot_depth * 0.42)
        width = 0.012 + foot_depth * 0.02
        pole = present & ((x - px).abs() < width) & (y < foot) & (y > foot - 0.25 - foot_depth * 0.35)
        c.paint(pole, c.colour((0.25, 0.25, 0.28), 0.05), POLE)

    # persons on the sidewalks: legs, torso in a random colour, head
    for k in range(MAX_PERSONS):
        present = c.uniform(0, 1, 1, 1) < 0.6
        foot = horizon + c.uniform(0.15, 0.9, 1, 1) * (1 - horizon)
        foot_depth = (foot - horizon) / (1 - horizon)
        height = 0.1 + 0.22 * foot_depth
        side = torch.where(c.uniform(0, 1, 1, 1) < 0.5, -1.0, 1.0)
        cx = road_centre + side * (0.06 + foot_depth * 0.5) + c.uniform(-0.03, 0.03, 1, 1)
        half = height * 0.16
        top = foot - height
        body = present & ((x - cx).abs() < half) & (y > top + height * 0.2) & (y < foot)
        head = present & (((x - cx) ** 2 + (y - top - height * 0.1) ** 2) < (height * 0.11) ** 2)
        legs = body & (y > top + height * 0.6)
        ident = torch.full((n, 1, 1), MAX_CARS + 1 + k)
        c.paint(body, c.colour((0.5, 0.5, 0.5), 0.5), PERSON, ident)
        c.paint(legs, c.colour((0.15, 0.15, 0.25), 0.08))
        c.paint(head, c.colour((0.85, 0.65, 0.5), 0.08), PERSON, ident)

    # cars on the road, farthest first so nearer cars occlude them
    car_feet = torch.sort(c.uniform(0.2, 0.95, MAX_CARS), dim=1).values
    car_present = c.uniform(0, 1, MAX_CARS) < torch.tensor([0.85, 0.55, 0.35])
    for k in range(MAX_CARS):
        present = car_present[:, k].view(n, 1, 1)
        foot_depth = car_feet[:, k].view(n, 1, 1)
        foot = horizon + foot_depth * (1 - horizon)
        width = (0.08 + 0.32 * foot_depth) * c.uniform(0.8, 1.2, 1, 1)
        height = width * c.uniform(0.5, 0.7, 1, 1)
        lane_half = 0.04 + foot_depth * 0.3
        cx = road_centre + c.uniform(-1, 1, 1, 1) * lane_half
        top = foot - height
        body = present & ((x - cx).abs() < width / 2) & (y > top + height * 0.3) & (y < foot - height * 0.1)
        cabin = present & ((x - cx).abs() < width * 0.32) & (y > top) & (y <= top + height * 0.3 + 1e-6)
        wheels = present & ((x - cx).abs() > width * 0.22) & ((x - cx).abs() < width * 0.42) & (
            y >= foot - height * 0.1) & (y < foot)
        ident = torch.full((n, 1, 1), k + 1)
        c.paint(body, c.colour((0.5, 0.5, 0.5), 0.5), CAR, ident)
        c.paint(cabin, c.colour((0.2, 0.25, 0.35), 0.08), CAR, ident)
        c.paint(wheels, c.colour((0.08, 0.08, 0.08), 0.03), CAR, ident)

    brightness = c.uniform(0.85, 1.15, 1, 1, 1)
    image = c.render(sky.expand(n, 3, *size))
    noise = torch.randn(image.shape, generator=gen) * 0.03
    image = ((image * brightness + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return Split(image, c.label, c.instance)


@register("synthetic")
def build(config: DatasetConfig) -> SegmentationDataset:
    """Synthetic street scenes; train and test come from independent streams of the seed."""
    train = scenes(config, config.train_size or DEFAULT_TRAIN_SIZE, 2 * config.seed)
    test = scenes(config, config.test_size or DEFAULT_TEST_SIZE, 2 * config.seed + 1)
    return SegmentationDataset("synthetic", CLASS_NAMES, train, test,
                              attack_defaults={"target": "road", "victims": ("car",)})


def scenes(config: DatasetConfig, n: int, seed: int) -> Split:
    """``generate(n, config.size, seed)``, through a safetensors file in ``config.cache_dir``
    when there is one; a damaged file (its recorded hash no longer matches) is generated again."""
    if config.cache_dir is None:
        return generate(n, config.size, seed)
    key = content_key({"version": GENERATOR_VERSION, "n": n, "size": list(config.size), "seed": seed})
    path = Path(config.cache_dir) / f"synthetic-{key}.safetensors"
    with file_lock(path.with_suffix(".lock")):
        cached = read_scenes(path)
        if cached is not None:
            return cached
        split = generate(n, config.size, seed)
        tensors = {"images": split.images.contiguous(), "masks": split.masks.contiguous(),
                   "instances": split.instances.contiguous()}
        atomic_write_bytes(path, safetensors.torch.save(tensors, metadata={"sha256": tensors_sha256(tensors)}))
        return split


def read_scenes(path: Path) -> Split | None:
    if not path.is_file():
        return None
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            recorded = (handle.metadata() or {}).get("sha256")
            tensors = {name: handle.get_tensor(name) for name in ("images", "masks", "instances")}
    except Exception as error:  # a truncated or foreign file: the library raises several types
        log.warning("cached scenes %s are unreadable (%s); generating them again", path, error)
        return None
    if recorded != tensors_sha256(tensors):
        log.warning("cached scenes %s are damaged (hash mismatch); generating them again", path)
        return None
    return Split(tensors["images"], tensors["masks"], tensors["instances"])


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].numpy().tobytes())
    return digest.hexdigest()
