"""ADE20K's 150 benchmark classes (the SceneParsing challenge's objectInfo150.txt, first name of each),
in training-id order: stored value v (1 to 150) is training id v - 1; stored 0 ("other") is ignored."""
import colorsys

CLASS_NAMES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
UNLABELLED = 0  # the stored value of pixels of no benchmark class ("other"), ignored by the benchmark
STORED_VALUES = tuple(range(1, len(CLASS_NAMES) + 1))  # class i is stored as i + 1


def palette() -> tuple[tuple[int, int, int], ...]:
    """One colour per class, hues a golden angle apart, brightness alternating, so that
    neighbouring ids differ."""
    return tuple(tuple(round(channel * 255) for channel in colorsys.hsv_to_rgb(index * 0.618034 % 1, 1.0,
                                                                               1.0 if index % 2 == 0 else 0.7))
                 for index in range(len(CLASS_NAMES)))


PALETTE = palette()
