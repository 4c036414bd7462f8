"""A product catalogue of titles and descriptions only (no genres, tags or years), with known
answers: three families of products whose descriptions share family phrases ("stainless steel",
"wireless earbuds", "garden hose"), under brand and model-number noise every family shares
("Acme X-200", "gsw-1000"), each family's item vectors near its own axis, and users who each
bought a handful of one family's products."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipeline.data.artifacts import Processed

FAMILIES = {
    "cookware": ("stainless steel", "cast iron skillet", "non-stick coating", "oven safe"),
    "audio": ("wireless earbuds", "noise cancelling", "charging case", "bluetooth pairing"),
    "garden": ("garden hose", "brass fittings", "kink resistant", "watering nozzle"),
}
NOUNS = {
    "cookware": ("Pan", "Skillet", "Pot", "Wok"),
    "audio": ("Earbuds", "Headset", "Buds", "Earphones"),
    "garden": ("Hose", "Sprayer", "Reel", "Nozzle"),
}
BRANDS = ("Acme X-200", "Inkbird GSW-1000", "Kreg SML-C", "Zenith 3000")
ITEMS_PER_FAMILY = 12
USERS_PER_FAMILY = 8
EVENTS_PER_USER = 4


def family_items() -> tuple[pl.DataFrame, np.ndarray]:
    """The catalogue (`item_idx, item_id, title, description`) and its unit item vectors:
    family f's items near axis f. Each item names three of its family's four phrases."""
    rng = np.random.default_rng(0)
    rows, vectors = [], []
    for family, (name, phrases) in enumerate(FAMILIES.items()):
        for position in range(ITEMS_PER_FAMILY):
            item = family * ITEMS_PER_FAMILY + position
            named = [phrases[(position + shift) % 4] for shift in range(3)]
            brand = BRANDS[item % len(BRANDS)]
            rows.append(
                {
                    "item_idx": item,
                    "item_id": str(1000 + item),
                    "title": f"{brand} {NOUNS[name][position % 4]} {position + 1}",
                    "description": f"{named[0].capitalize()} with {named[1]}, and {named[2]}. "
                    f"By {brand.split()[0]}, model {brand.split()[1].lower()}. Great value.",
                }
            )
            vector = np.zeros(8)
            vector[family] = 1.0
            vector[3:] = 0.2 * rng.standard_normal(5)
            vectors.append(vector / np.linalg.norm(vector))
    items = pl.DataFrame(rows, schema_overrides={"item_idx": pl.Int32})
    return items, np.asarray(vectors, dtype=np.float32)


def family_events() -> pl.DataFrame:
    """`user_idx, item_idx, rating, timestamp`: user u of family f bought EVENTS_PER_USER of f's
    products, one event each."""
    rng = np.random.default_rng(1)
    rows = []
    for family in range(len(FAMILIES)):
        for member in range(USERS_PER_FAMILY):
            user = family * USERS_PER_FAMILY + member
            chosen = rng.choice(ITEMS_PER_FAMILY, size=EVENTS_PER_USER, replace=False)
            for step, position in enumerate(chosen.tolist()):
                rows.append((user, family * ITEMS_PER_FAMILY + position, 1.0, 100 * user + step))
    return pl.DataFrame(
        rows,
        schema={
            "user_idx": pl.Int32,
            "item_idx": pl.Int32,
            "rating": pl.Float32,
            "timestamp": pl.Int64,
        },
        orient="row",
    )


def family_processed() -> Processed:
    """Every event in training (the other splits empty), the catalogue and the users."""
    items, _ = family_items()
    train = family_events()
    empty = train.clear()
    users = pl.DataFrame(
        {
            "user_idx": list(range(len(FAMILIES) * USERS_PER_FAMILY)),
            "user_id": [str(u) for u in range(len(FAMILIES) * USERS_PER_FAMILY)],
        },
        schema_overrides={"user_idx": pl.Int32},
    )
    return Processed(
        train=train, validation=empty, test=empty, cold=empty, items=items, users=users
    )


def family_of(item: int) -> str:
    """The family an item belongs to."""
    return list(FAMILIES)[item // ITEMS_PER_FAMILY]
