"""The scale benchmark's second data shape: a description-rich product catalogue, as online shops
bring (`product_events`, seeded, deterministic, exactly n events).

Sparse users (about n/7: at least 5 events each, ~7 on average, a few up to 60) and about n/13.5
items (60k events: 8.6k users, 4.4k items) with Zipf (exponent 1.1) popularity, in 16 product
categories with invented brands. No genres and no tags: each item has a title of 10-13 words
(brand, category words, attributes and model codes such as `20V` or `XR-450`, accessories) and a
description of 60-95 words in sentences (mostly its category's words, some of one related
category's, marketing and function words), and that text is the only content. Users prefer 1-2
categories, and shop in sequence: an event follows the previous one (`FOLLOW_SHARE`) with an item
of the same category, near it in popularity or of the same brand, so order-aware models have
something to learn. Event counts, the de-duplication of (user, item) picks, timestamps and the
frames are `synthetic`'s.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import polars as pl

from scaling.synthetic import (
    MIN_USER_EVENTS,
    POPULARITY_ROUNDS,
    PREFERENCE_ROUNDS,
    Preferences,
    check_size,
    events_per_user,
    frames,
    make_distinct,
    timestamps,
    zipf_weights,
)

EVENTS_PER_USER = 7  # mean; users = n_events / 7
EVENTS_PER_ITEM = 13.5  # items = n_events / 13.5: 4.4k at 60k events
MAX_USER_EVENTS = 60
ACTIVITY_SIGMA = 1.0  # lognormal spread of the events above the minimum
FAVOURITE_CATEGORIES = 2  # Dirichlet-weighted: most users shop mainly in one
GLOBAL_SHARE = 0.15  # share of picks drawn by popularity alone, whatever the category
FOLLOW_SHARE = 0.4  # share of a user's later events that follow the previous item's category
SAME_BRAND_SHARE = 0.35  # of those, the same brand; the others near it in popularity rank
NEAR_RANK_P = 0.3  # geometric distance in the category's popularity ranking (mean ~3 ranks)


class Category(NamedTuple):
    """A product category: its name, the category its descriptions borrow from, its brands, 15
    words (nouns and adjectives) and attributes (sizes, ratings, with digits)."""

    name: str
    related: str
    brands: tuple[str, ...]
    words: tuple[str, ...]
    attributes: tuple[str, ...]


CATEGORIES: tuple[Category, ...] = (
    Category("Power Tools", "Garden", ("Norvik", "Brantor", "Holtgrim", "Ferrowen", "Tarrock"),
             ("drill", "driver", "cordless", "brushless", "impact", "saw", "sander", "grinder",
              "battery", "charger", "torque", "chuck", "blade", "motor", "workshop"),
             ("20V", "18V", "4.0Ah", "13mm", "2-Speed", "850W")),
    Category("Kitchen", "Camping", ("Pellino", "Saffrane", "Ovenbrook", "Marrowick", "Cucinetta"),
             ("blender", "knife", "skillet", "nonstick", "stainless", "cookware", "kettle",
              "spatula", "chopping", "saucepan", "whisk", "countertop", "ceramic", "oven",
              "recipe"),
             ("12-inch", "1.7L", "5-Piece", "1200W", "10-Cup", "BPA-Free")),
    Category("Audio", "Photography", ("Sonterra", "Velluno", "Auralith", "Breckwave", "Tonnvik"),
             ("headphones", "speaker", "wireless", "bluetooth", "earbuds", "bass", "stereo",
              "amplifier", "microphone", "noise", "cancelling", "soundbar", "subwoofer",
              "turntable", "acoustic"),
             ("40mm", "30W", "2.1-Channel", "24-Bit", "BT5.3", "60H")),
    Category("Camping", "Fitness", ("Tundrel", "Ridgemark", "Fellwise", "Cairnlow", "Bivvara"),
             ("tent", "sleeping", "backpack", "lantern", "waterproof", "hiking", "stove",
              "trekking", "hammock", "tarp", "compass", "insulated", "canteen", "outdoor",
              "trail"),
             ("2-Person", "4-Season", "65L", "20D", "3-Layer", "1.2kg")),
    Category("Pet Supplies", "Garden",
             ("Pawbright", "Tailwick", "Whiskerdale", "Furrowin", "Kibblo"),
             ("dog", "cat", "leash", "collar", "litter", "kibble", "chew", "scratching",
              "aquarium", "kennel", "grooming", "treat", "harness", "bowl", "catnip"),
             ("Size-M", "5m", "10kg", "24-inch", "2-Pack", "40L")),
    Category("Office", "Lighting", ("Quillmark", "Deskora", "Paperlane", "Ledgerton", "Inkwhistle"),
             ("stapler", "notebook", "desk", "ergonomic", "binder", "printer", "paper",
              "organizer", "ballpoint", "highlighter", "folder", "monitor", "chair",
              "whiteboard", "planner"),
             ("A4", "A5", "100-Sheet", "0.7mm", "12-Pack", "80gsm")),
    Category("Garden", "Power Tools",
             ("Greenhollow", "Mossgate", "Thornvale", "Verdina", "Loamley"),
             ("hose", "shovel", "pruning", "shears", "planter", "seeds", "rake", "compost",
              "sprinkler", "lawn", "trowel", "watering", "greenhouse", "mulch", "hedge"),
             ("50ft", "15m", "3-Tier", "25L", "8-Pattern", "40cm")),
    Category("Beauty", "Bathroom", ("Lumelle", "Orlavie", "Saphine", "Bellacour", "Rosavene"),
             ("serum", "moisturizer", "lipstick", "mascara", "foundation", "brush", "hydrating",
              "vitamin", "cleanser", "fragrance", "matte", "palette", "nail", "skincare", "glow"),
             ("30ml", "50ml", "SPF30", "12-Shade", "pH-5.5", "3-in-1")),
    Category("Toys", "Baby", ("Toyvelle", "Brickwhim", "Jollop", "Pipkinny", "Wobblor"),
             ("puzzle", "blocks", "doll", "robot", "plush", "dinosaur", "racing", "building",
              "educational", "magnetic", "puppet", "train", "wooden", "stacking", "playset"),
             ("500-Piece", "48-Piece", "Ages-3+", "1:24", "2-Player", "100-Piece")),
    Category("Fitness", "Camping", ("Vigorra", "Strydon", "Korvath", "Ironwick", "Flexanne"),
             ("dumbbell", "yoga", "mat", "resistance", "kettlebell", "treadmill", "jump", "rope",
              "foam", "roller", "workout", "adjustable", "barbell", "gym", "protein"),
             ("10kg", "6mm", "5-Level", "20lb", "183cm", "2x5kg")),
    Category("Lighting", "Office", ("Lumora", "Glimmerton", "Halvik", "Candelor", "Beamwell"),
             ("lamp", "bulb", "pendant", "chandelier", "dimmable", "sconce", "floodlight",
              "strip", "filament", "shade", "ceiling", "spotlight", "warm", "smart", "fixture"),
             ("E27", "9W", "2700K", "800lm", "GU10", "5m")),
    Category("Bathroom", "Beauty", ("Aquenza", "Basinford", "Tiderow", "Rinsewell", "Lathero"),
             ("shower", "towel", "faucet", "vanity", "toilet", "mirror", "bathmat", "soap",
              "dispenser", "caddy", "rainfall", "chrome", "tile", "drain", "rack"),
             ("8-inch", "G1/2", "60x40cm", "3-Function", "600mm", "IPX4")),
    Category("Car Care", "Power Tools", ("Motorvane", "Gleamline", "Roadwick", "Carrowell",
                                         "Shinetta"),
             ("wax", "polish", "microfiber", "vacuum", "tire", "wiper", "dashboard", "detailing",
              "shampoo", "buffer", "jumper", "inflator", "seat", "cover", "scratch"),
             ("12V", "500ml", "150PSI", "24-inch", "Type-C", "3-Pack")),
    Category("Baby", "Toys", ("Cradlewood", "Bundlee", "Lullo", "Pebbleton", "Snugglet"),
             ("stroller", "diaper", "bottle", "pacifier", "crib", "swaddle", "teether",
              "carrier", "bib", "nursery", "onesie", "rattle", "blanket", "organic", "highchair"),
             ("0-6M", "260ml", "Size-2", "3-Pack", "5-Point", "6-12M")),
    Category("Photography", "Audio", ("Optivar", "Lensbury", "Shutterholm", "Focalle", "Aperta"),
             ("camera", "lens", "tripod", "mirrorless", "zoom", "aperture", "flash", "shutter",
              "gimbal", "filter", "prime", "telephoto", "sensor", "memory", "softbox"),
             ("50mm", "f/1.8", "24MP", "4K", "64GB", "18-55mm")),
    Category("Sewing & Crafts", "Office",
             ("Stitchworth", "Loomara", "Threadby", "Purlwick", "Spoolwyn"),
             ("sewing", "thread", "fabric", "needle", "yarn", "knitting", "embroidery", "quilting",
              "scissors", "bobbin", "crochet", "pattern", "stitch", "felt", "beads"),
             ("100m", "12-Color", "No.8", "4.5mm", "50g", "60-Spool")),
)  # fmt: skip
"""The product categories, each with its invented brands, words and attributes."""
BRAND_CATEGORY = {brand: c.name for c in CATEGORIES for brand in c.brands}
"""Each brand's category (a title's first word is its brand)."""
ACCESSORIES = (
    "case", "bag", "manual", "stand", "adapter", "cable", "pouch", "clip", "refill", "mount",
    "cover", "holder",
)  # fmt: skip
TITLE_WORDS = (
    "set", "kit", "pack", "pro", "compact", "portable", "premium", "professional", "deluxe",
    "lightweight", "essentials", "edition", "bundle", "series", "plus",
)  # fmt: skip
MARKETING_WORDS = (
    "durable", "premium", "easy", "design", "quality", "perfect", "reliable", "comfortable",
    "versatile", "lightweight", "sturdy", "stylish", "practical", "everyday", "ideal", "high",
    "performance", "long-lasting", "compact", "gift", "modern", "classic", "trusted", "value",
    "effortless", "safe", "convenient", "secure", "smooth", "built",
)  # fmt: skip
FUNCTION_WORDS = (
    "the", "a", "and", "with", "for", "to", "of", "in", "your", "is", "this", "it", "on", "from",
    "that", "every", "you", "or", "at", "by",
)  # fmt: skip
# A description's words: its category's, then the related category's, then marketing words,
# then function words (cumulative shares).
DESCRIPTION_MIX = (0.5, 0.6, 0.78)
SENTENCE_WORDS = (8, 16)  # words per sentence, inclusive


def product_scale(n_events: int) -> tuple[int, int]:
    """(users, items) of a product data set with `n_events` events."""
    check_size(n_events)
    return n_events // EVENTS_PER_USER, round(n_events / EVENTS_PER_ITEM)


def _upper_first(word: str) -> str:
    return word[:1].upper() + word[1:]


def product_texts(
    rng: np.random.Generator, category: np.ndarray, brand: np.ndarray
) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles (10-13 words), empty genre lists and descriptions (60-95 words in sentences) of
    items with these categories and brands (`brand` indexes the category's brands)."""
    n = category.size
    words = np.array([c.words for c in CATEGORIES])
    related = np.array([[c.name for c in CATEGORIES].index(c.related) for c in CATEGORIES])
    own = rng.random((n, words.shape[1])).argsort(axis=1)  # distinct category words per item
    extras = rng.random((n, len(ACCESSORIES))).argsort(axis=1)[:, :2]
    head_size = rng.integers(2, 4, n)  # category words after the brand
    with_size = rng.integers(2, 4, n)  # things it comes with
    attribute = rng.integers(0, len(CATEGORIES[0].attributes), n)
    code = rng.random(n) < 0.5
    letters = rng.integers(0, 26, (n, 2))
    number = rng.integers(10, 100, n) * 10
    tail = rng.integers(0, len(TITLE_WORDS), n)
    length = rng.integers(60, 96, n)  # description words
    mix = rng.random(int(length.sum()))
    pick = rng.integers(0, words.shape[1], mix.size)
    general = rng.integers(0, len(MARKETING_WORDS), mix.size)
    function = rng.integers(0, len(FUNCTION_WORDS), mix.size)
    sentences = rng.integers(SENTENCE_WORDS[0], SENTENCE_WORDS[1] + 1, (n, 12)).cumsum(axis=1)

    of_word = np.repeat(category, length)
    drawn = np.where(
        mix < DESCRIPTION_MIX[0],
        words[of_word, pick],
        np.where(
            mix < DESCRIPTION_MIX[1],
            words[related[of_word], pick],
            np.where(
                mix < DESCRIPTION_MIX[2],
                np.array(MARKETING_WORDS)[general],
                np.array(FUNCTION_WORDS)[function],
            ),
        ),
    ).tolist()
    ends = np.cumsum(length)
    titles, descriptions = [], []
    for i in range(n):
        kind = CATEGORIES[category[i]]
        name = kind.brands[brand[i]]
        mine = [str(words[category[i], j]) for j in own[i]]
        spec = [kind.attributes[attribute[i]]]
        if code[i]:
            spec.insert(0, f"{chr(65 + letters[i, 0])}{chr(65 + letters[i, 1])}-{number[i]}")
        comes = [mine[head_size[i]], *(ACCESSORIES[j] for j in extras[i])][: with_size[i]]
        comes = [_upper_first(word) for word in comes]
        listed = ", ".join(comes[:-1]) + " and " + comes[-1]
        head = " ".join(_upper_first(word) for word in mine[: head_size[i]])
        finish = f"{_upper_first(TITLE_WORDS[tail[i]])} {_upper_first(mine[4])}"
        titles.append(f"{name} {head} {' '.join(spec)} with {listed}, {finish}")

        text = [
            "The",
            name,
            kind.attributes[attribute[i]],
            *drawn[ends[i] - length[i] + 3 : ends[i]],
        ]
        cuts = [int(c) for c in sentences[i] if c < length[i] - 3]  # no sentence under 4 words
        parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, length[i]], strict=True)]
        descriptions.append(" ".join(_upper_first(" ".join(part)) + "." for part in parts))
    return titles, [[] for _ in range(n)], descriptions


def product_events(n_events: int, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A deterministic product data set of exactly `n_events` events: (interactions, items),
    with the columns of `synthetic.synthetic_events` and an empty `genres` list for every item.
    See the module docstring for the shape (`product_scale` for the counts)."""
    n_users, n_items = product_scale(n_events)
    rng = np.random.default_rng(seed)

    # Items: a category, a Zipf weight and a brand of the category each; users' categories.
    category = rng.integers(0, len(CATEGORIES), n_items)
    weight = zipf_weights(rng, n_items)
    local_brand = rng.integers(0, len(CATEGORIES[0].brands), n_items)
    brand = category * len(CATEGORIES[0].brands) + local_brand
    preferences = Preferences(rng, category, weight, n_users, FAVOURITE_CATEGORIES)
    # Each item's place in its category's popularity ranking, and in its brand's.
    ranked = np.lexsort((-weight, category))
    place = np.empty(n_items, dtype=np.int64)
    place[ranked] = np.arange(n_items)
    by_brand = np.lexsort((-weight, brand))
    brand_size = np.bincount(brand, minlength=len(BRAND_CATEGORY))
    brand_start = np.cumsum(brand_size) - brand_size

    def follow(previous: np.ndarray) -> np.ndarray:
        """An item of each previous item's category: of its brand, or near it in popularity."""
        size = previous.size
        same_brand = rng.random(size) < SAME_BRAND_SHARE
        step = rng.geometric(NEAR_RANK_P, size) * np.where(rng.random(size) < 0.5, -1, 1)
        within = rng.random(size)
        low = preferences.starts[category[previous]]
        high = preferences.ends[category[previous]] - 1
        near = place[previous] + step
        near = np.where((near < low) | (near > high), place[previous] - step, near)
        group = brand[previous]
        of_brand = brand_start[group] + (within * brand_size[group]).astype(np.int64)
        return np.where(same_brand, by_brand[of_brand], ranked[near.clip(low, high)])

    counts = events_per_user(
        rng,
        n_events,
        n_users,
        cap=max(MIN_USER_EVENTS, min(MAX_USER_EVENTS, n_items // 2)),
        sigma=ACTIVITY_SIGMA,
    )
    user = np.repeat(np.arange(n_users), counts)
    item, _ = preferences.draw(user, GLOBAL_SHARE)
    first = np.cumsum(counts) - counts
    follows = rng.random(n_events) < FOLLOW_SHARE
    follows[first] = False
    # Follow the chain a position at a time: event j's item depends on event j-1's.
    chained = np.flatnonzero(follows)
    position = (np.arange(n_events) - np.repeat(first, counts))[chained]
    order = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[order], np.arange(1, int(counts.max()) + 1))
    for lo, hi in itertools.pairwise(bounds):
        at = chained[order[lo:hi]]
        item[at] = follow(item[at - 1])

    def redraw(again: np.ndarray, attempt: int) -> None:
        """Repeated picks: a follower follows again, the others by preference; then by
        popularity, then uniformly from the catalogue."""
        if attempt < PREFERENCE_ROUNDS:
            chain = again[follows[again]]
            item[chain] = follow(item[chain - 1])
            free = again[~follows[again]]
            item[free] = preferences.draw(user[free], GLOBAL_SHARE)[0]
        elif attempt < PREFERENCE_ROUNDS + POPULARITY_ROUNDS:
            item[again] = preferences.draw(user[again], 1.0)[0]
        else:
            item[again] = rng.integers(0, n_items, again.size)

    make_distinct(user, item, n_items, redraw)
    liked = category[item] == preferences.favourite[user, 0]
    rating = np.rint(3.6 + 0.6 * liked + rng.normal(0.0, 1.0, n_events)).clip(1, 5)
    texts = product_texts(rng, category, local_brand)
    return frames(user, item, rating, timestamps(rng, counts), texts)
