"""Procedural pedestrians for the synthetic datasets (numpy + Pillow, no TensorFlow).

A person is drawn once as a *region map* (background, skin, hair, top, trousers, shoes, bag,
glasses) at twice the output size, then coloured per modality and box-downsampled:

- visible (cameras 1, 2, 4, 5): each region takes the identity's clothing colour, the scene
  behind it is the camera's, and the whole image gets the camera's colour cast and gain;
- infrared (cameras 3, 6): each region takes an intensity from the identity's *material* value
  per garment, drawn independently of its colour; skin is warm (bright), the background dim,
  the image a little blurred and noisier. It is stored grey in 3 channels (R = G = B), as the
  SYSU-MM01 infrared jpgs are.

So colour tells identities apart only in visible images (the modality gap the paper's MAM
addresses), while the shape nuances of an identity (sleeve and trouser length, coat length, bag,
glasses, long hair, build, height) survive in both modalities: the kind of cross-modality
nuance PAM is meant to find. Pose (position, scale, stride, arm swing, mirroring) varies per image.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

BACKGROUND, SKIN, HAIR, TOP, TROUSERS, SHOES, BAG, GLASSES = range(8)
NUM_REGIONS = 8
SUPERSAMPLE = 2

#: Visible colour cast per camera (R, G, B gains): indoor 1-2 warm/neutral, outdoor 4-5 cool/bright.
CAMERA_CAST = {1: (1.08, 1.0, 0.86), 2: (0.92, 1.0, 1.07), 4: (1.0, 1.05, 1.15), 5: (1.12, 1.06, 0.95)}
#: Visible scene colour per camera (wall / floor).
CAMERA_SCENE = {1: ((150, 140, 120), (95, 85, 75)), 2: ((120, 130, 140), (70, 75, 80)),
                4: ((150, 175, 200), (110, 110, 100)), 5: ((170, 165, 150), (90, 100, 80))}
#: Infrared (contrast, offset, background level) per camera: indoor 3, outdoor 6.
CAMERA_THERMAL = {3: (1.0, 0.0, 50.0), 6: (0.85, 18.0, 70.0)}
SKIN_TONES = ((236, 200, 170), (210, 160, 120), (170, 120, 85), (120, 80, 55), (245, 215, 190))
HAIR_COLOURS = ((25, 20, 18), (70, 45, 25), (120, 85, 45), (200, 170, 110), (90, 90, 90))
SHOE_COLOURS = ((20, 20, 20), (235, 235, 235), (110, 70, 40), (128, 128, 128), (170, 30, 30))


@dataclass(frozen=True)
class PersonLook:
    """What stays fixed for one identity across cameras and images."""

    skin: tuple
    hair: tuple
    top: tuple
    trousers: tuple
    shoes: tuple
    bag_colour: tuple
    materials: tuple      # infrared intensity per region, 0..255, independent of the colours
    long_sleeves: bool
    long_trousers: bool
    long_coat: bool
    long_hair: bool
    glasses: bool
    bag: int              # 0 none, -1 or +1: side of the shoulder bag
    build: float          # width factor
    height: float         # body height as a fraction of the image height


@dataclass(frozen=True)
class Pose:
    """What changes per image."""

    dx: float
    dy: float
    scale: float
    stride: float
    swing: float
    mirror: bool
    brightness: float


def _hsv(h, s, v) -> tuple:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v))


def random_look(rng: np.random.Generator) -> PersonLook:
    """Draw one identity's attributes."""
    def pick(options):
        return options[int(rng.integers(len(options)))]

    materials = np.zeros(NUM_REGIONS)
    materials[SKIN] = rng.uniform(200, 235)
    materials[HAIR] = rng.uniform(60, 110)
    materials[[TOP, TROUSERS, BAG]] = rng.uniform(60, 195, size=3)
    materials[SHOES] = rng.uniform(45, 120)
    materials[GLASSES] = 35.0
    return PersonLook(
        skin=pick(SKIN_TONES),
        hair=pick(HAIR_COLOURS),
        top=_hsv(rng.uniform(), rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.95)),
        trousers=_hsv(rng.uniform(), rng.uniform(0.1, 0.6), rng.uniform(0.15, 0.65)),
        shoes=pick(SHOE_COLOURS),
        bag_colour=_hsv(rng.uniform(), rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)),
        materials=tuple(float(m) for m in materials),
        long_sleeves=bool(rng.random() < 0.5),
        long_trousers=bool(rng.random() < 0.65),
        long_coat=bool(rng.random() < 0.25),
        long_hair=bool(rng.random() < 0.35),
        glasses=bool(rng.random() < 0.3),
        bag=int(pick((0, 0, -1, 1))),
        build=float(rng.uniform(0.82, 1.22)),
        height=float(rng.uniform(0.80, 0.95)),
    )


def random_pose(rng: np.random.Generator) -> Pose:
    """Draw one image's pose jitter."""
    return Pose(
        dx=float(rng.uniform(-0.07, 0.07)),
        dy=float(rng.uniform(0.0, 0.03)),
        scale=float(rng.uniform(0.94, 1.05)),
        stride=float(rng.uniform(0.0, 0.07)),
        swing=float(rng.uniform(-0.3, 0.3)),
        mirror=bool(rng.random() < 0.5),
        brightness=float(rng.uniform(0.88, 1.12)),
    )


def draw_regions(look: PersonLook, pose: Pose, size: tuple[int, int]) -> np.ndarray:
    """Region map of one person: uint8 (SUPERSAMPLE*H, SUPERSAMPLE*W), values BACKGROUND..GLASSES."""
    h, w = size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE
    canvas = Image.new("L", (w, h), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    u = min(look.height * pose.scale, 0.97) * h           # body height in pixels
    foot = h * (0.99 - pose.dy)
    top = foot - u
    cx = w / 2 + pose.dx * w
    shoulder, hip = 0.125 * u * look.build, 0.095 * u * look.build

    def at(fraction):                                      # y of a fraction of the body height
        return top + fraction * u

    def limb(fraction):                                    # a line width in pixels
        return max(2, int(round(fraction * u * look.build)))

    def segment(p, q, width, region, fraction=1.0):
        end = (p[0] + fraction * (q[0] - p[0]), p[1] + fraction * (q[1] - p[1]))
        draw.line([p, end], fill=region, width=width)

    for side in (-1, 1):                                   # legs, then shoes
        p = (cx + side * 0.5 * hip, at(0.50))
        q = (p[0] + side * pose.stride * u, at(0.955))
        segment(p, q, limb(0.075), SKIN)
        segment(p, q, limb(0.08), TROUSERS, 1.0 if look.long_trousers else 0.45)
        draw.ellipse([q[0] - 0.05 * u, q[1] - 0.015 * u, q[0] + 0.05 * u, q[1] + 0.035 * u], fill=SHOES)
    head_x, head_y = cx, at(0.075)
    if look.long_hair:
        draw.rectangle([head_x - 0.06 * u, head_y, head_x + 0.06 * u, at(0.22)], fill=HAIR)
    hem = at(0.66 if look.long_coat else 0.53)
    draw.polygon([(cx - shoulder, at(0.16)), (cx + shoulder, at(0.16)),
                  (cx + hip * 1.08, hem), (cx - hip * 1.08, hem)], fill=TOP)
    for side in (-1, 1):                                   # arms swing in opposite directions
        p = (cx + side * shoulder * 0.9, at(0.18))
        angle = side * 0.08 + pose.swing * side
        q = (p[0] + 0.36 * u * np.sin(angle), p[1] + 0.36 * u * np.cos(angle))
        segment(p, q, limb(0.06), SKIN)
        segment(p, q, limb(0.065), TOP, 0.88 if look.long_sleeves else 0.35)
    draw.rectangle([head_x - 0.025 * u, at(0.12), head_x + 0.025 * u, at(0.165)], fill=SKIN)
    head = [head_x - 0.055 * u, head_y - 0.07 * u, head_x + 0.055 * u, head_y + 0.07 * u]
    draw.ellipse(head, fill=SKIN)
    draw.pieslice([head[0] - 1, head[1] - 1, head[2] + 1, head[3] + 1], 180, 360, fill=HAIR)
    if look.glasses:
        draw.line([(head_x - 0.048 * u, head_y + 0.012 * u), (head_x + 0.048 * u, head_y + 0.012 * u)],
                  fill=GLASSES, width=limb(0.02))
    if look.bag:
        s = look.bag
        draw.line([(cx - s * shoulder * 0.6, at(0.16)), (cx + s * hip * 1.2, at(0.42))], fill=BAG, width=limb(0.015))
        x0, x1 = sorted((cx + s * hip * 1.0, cx + s * (hip + 0.1 * u)))
        draw.rectangle([x0, at(0.40), x1, at(0.58)], fill=BAG)
    regions = np.asarray(canvas)
    return regions[:, ::-1] if pose.mirror else regions


def _scene(rng, h, w, wall, floor, jitter) -> np.ndarray:
    """A wall/floor background with a few clutter boxes: float (h, w, C)."""
    wall, floor = np.asarray(wall, float), np.asarray(floor, float)
    horizon = int(h * rng.uniform(0.62, 0.8))
    image = np.empty((h, w, wall.size))
    ramp = np.linspace(1.05, 0.9, horizon)[:, None, None]
    image[:horizon] = wall * ramp
    image[horizon:] = floor
    for _ in range(int(rng.integers(1, 4))):               # clutter: doors, posts, plants
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        image[y0:y0 + int(rng.integers(h // 8, h // 2)), x0:x0 + int(rng.integers(w // 8, w // 3))] = (
            wall + rng.normal(0.0, jitter, wall.size))
    return image


def _downsample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Box-filter a float (H', W', C) image to ``size`` = (H, W); returns float."""
    channels = [np.asarray(Image.fromarray(image[..., c].astype(np.float32))
                           .resize((size[1], size[0]), Image.BOX)) for c in range(image.shape[-1])]
    return np.stack(channels, axis=-1).astype(np.float64)


def render_person(look: PersonLook, pose: Pose, camera: int, size: tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """One image of ``look`` seen by ``camera``: uint8 (H, W, 3); grey (R = G = B) for cameras 3 and 6."""
    regions = draw_regions(look, pose, size)
    h, w = regions.shape
    person = regions != BACKGROUND
    columns = np.nonzero(person.any(axis=0))[0]
    centre = columns.mean() if columns.size else w / 2
    shading = np.clip(1.0 - 0.5 * ((np.arange(w) - centre) / w) ** 2 * 4, 0.75, 1.0)[None, :]
    if camera in CAMERA_THERMAL:
        contrast, offset, level = CAMERA_THERMAL[camera]
        values = np.asarray(look.materials)[regions]
        scene = _scene(rng, h, w, (level,), (level * 0.8,), 12.0)[..., 0]
        grey = np.where(person, values * (0.9 + 0.1 * shading), scene) * pose.brightness
        grey = _downsample(grey[..., None], size)[..., 0]
        grey = np.asarray(Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.6)),
                          dtype=np.float64)
        grey = contrast * grey + offset + rng.normal(0.0, 5.0, grey.shape)
        grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    palette = np.array([(0, 0, 0), look.skin, look.hair, look.top, look.trousers, look.shoes,
                        look.bag_colour, (15, 15, 15)], dtype=np.float64)
    wall, floor = CAMERA_SCENE.get(camera, CAMERA_SCENE[2])
    scene = _scene(rng, h, w, wall, floor, 25.0)
    colour = np.where(person[..., None], palette[regions] * shading[..., None], scene)
    colour = _downsample(colour, size) * np.asarray(CAMERA_CAST.get(camera, CAMERA_CAST[2])) * pose.brightness
    colour = colour + rng.normal(0.0, 3.0, colour.shape)
    return np.clip(np.round(colour), 0, 255).astype(np.uint8)
