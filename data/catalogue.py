"""The Quackers & Co. catalogue: every duck of the sample shop, as data.

Sizes in cm, prices in GBP. The documents in `docs/` name these ducks, collections and prices, so a
change here is a change to the sample (bump `build_sample.SAMPLE_VERSION`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2025, 12, 31)
"""The web shop's trading period in the sample."""


@dataclass(frozen=True)
class Duck:
    """One product of the catalogue, with the hidden knobs that shape its sales."""

    duck_id: int
    name: str
    collection: str
    color: str
    material: str
    squeaks: bool
    size_cm: Decimal
    price: Decimal
    launched: date
    popularity: float
    quality: float
    limited: bool = False


# Sizes in cm, prices in GBP. `pop` weighs how often the duck is picked for an order; `stars` is
# the mean of its review ratings.
# Bath Spa ducks are natural rubber, Mini Sunny silicone, the rest recycled vinyl; every vinyl duck
# squeaks except Jingle Duck (a bell inside), and the other two materials come sealed.
_CATALOGUE = """
# name               | collection    | color                | size | price | launched   | pop| stars
Original Sunny       | Classic       | yellow               | 8.5  | 4.50  | 2016-04-09 | 8   | 4.5
Mini Sunny           | Classic       | yellow               | 5.0  | 2.95  | 2017-02-14 | 5   | 4.4
Big Bertha           | Classic       | yellow               | 25.0 | 19.99 | 2019-06-01 | 2   | 4.8
Mama Duck            | Classic       | yellow               | 12.0 | 6.50  | 2016-04-09 | 3   | 4.4
Pinky Puddles        | Classic       | pink                 | 8.5  | 4.95  | 2017-05-20 | 3   | 4.3
Midnight Mallard     | Classic       | black                | 8.5  | 5.50  | 2020-10-31 | 2   | 4.4
Glow Duck            | Classic       | luminous green       | 8.5  | 6.99  | 2021-03-12 | 3   | 3.2
Rainbow Ruby         | Classic       | rainbow              | 9.0  | 5.99  | 2018-06-30 | 6   | 4.5
Squeaky Pete         | Classic       | white                | 8.5  | 4.50  | 2016-09-01 | 3   | 4.3
Captain Quack        | Pirates       | yellow and black     | 10.0 | 8.99  | 2018-09-19 | 10  | 4.7
Blackbeak            | Pirates       | black                | 10.0 | 8.99  | 2018-09-19 | 4   | 4.4
Peg-Leg Polly        | Pirates       | green                | 9.5  | 7.99  | 2019-09-19 | 3   | 4.3
Long John Splasher   | Pirates       | brown                | 11.0 | 9.49  | 2019-09-19 | 3   | 4.4
Admiral Puddlesworth | Pirates       | navy blue            | 12.0 | 9.99  | 2021-09-19 | 2   | 4.5
Bonny Anne           | Pirates       | red                  | 9.5  | 7.99  | 2020-09-19 | 3   | 4.4
Salty Sam            | Pirates       | grey                 | 9.0  | 7.49  | 2022-09-19 | 2   | 4.2
Jolly Roger          | Pirates       | black and white      | 10.0 | 8.49  | 2024-09-19 | 4   | 4.5
Cosmo Quack          | Space         | white                | 10.0 | 9.99  | 2019-07-20 | 6   | 4.6
Luna Dabbler         | Space         | silver               | 9.5  | 9.49  | 2020-07-20 | 3   | 4.4
Rocket Rex           | Space         | red                  | 11.0 | 10.99 | 2021-04-12 | 3   | 3.6
Nebula Nell          | Space         | purple               | 9.5  | 9.49  | 2022-07-20 | 3   | 4.5
Comet Quackers       | Space         | orange               | 9.0  | 8.99  | 2023-07-20 | 2   | 4.3
Major Tom Mallard    | Space         | white and blue       | 10.5 | 10.49 | 2020-07-20 | 2   | 4.4
Galaxy Gus           | Space         | dark blue            | 10.0 | 11.99 | 2024-07-20 | 4   | 4.6
Moonwalker           | Space         | grey                 | 10.0 | 10.99 | 2025-07-20 | 5   | 4.7
Santa Quack          | Holiday       | red and white        | 10.0 | 7.99  | 2017-11-01 | 9   | 4.6
Reindeer Ralph       | Holiday       | brown                | 10.0 | 7.99  | 2018-11-01 | 6   | 4.5
Snowflake Sue        | Holiday       | white and light blue | 9.0  | 6.99  | 2019-11-01 | 5   | 4.4
Jingle Duck          | Holiday       | green and gold       | 8.5  | 6.99  | 2020-11-01 | 4   | 4.3
Gingerbread Duck     | Holiday       | brown                | 9.0  | 7.49  | 2021-11-01 | 5   | 4.5
Elfie                | Holiday       | green                | 8.0  | 6.99  | 2022-11-01 | 4   | 4.3
Aurora               | Holiday       | green and violet     | 11.0 | 14.99 | 2025-11-01 | 7   | 4.8
Frosty Feathers      | Holiday       | icy blue             | 11.0 | 14.99 | 2025-11-01 | 5   | 4.6
Nutcracker Quack     | Holiday       | red and gold         | 12.0 | 16.99 | 2025-11-01 | 6   | 4.9
Lavender Lou         | Bath Spa      | lilac                | 9.0  | 9.99  | 2020-01-15 | 5   | 4.6
Eucalyptus Ed        | Bath Spa      | sage green           | 9.0  | 9.99  | 2020-01-15 | 3   | 4.4
Bubble Bath Betty    | Bath Spa      | pink                 | 9.0  | 8.99  | 2021-01-15 | 3   | 4.3
Zen Duck             | Bath Spa      | white                | 10.0 | 11.49 | 2022-01-15 | 3   | 4.5
Cucumber Cool        | Bath Spa      | mint green           | 9.0  | 9.49  | 2023-01-15 | 2   | 4.2
Spa Day Sadie        | Bath Spa      | peach                | 9.0  | 10.49 | 2024-01-15 | 3   | 4.4
Rose Petal Rosie     | Bath Spa      | rose pink            | 9.0  | 10.99 | 2025-02-14 | 4   | 4.6
Goalie Gary          | Sports        | green                | 9.5  | 7.49  | 2018-06-14 | 3   | 4.3
Tennis Tess          | Sports        | white                | 9.0  | 7.49  | 2019-06-24 | 2   | 4.2
Surfer Sid           | Sports        | turquoise            | 9.5  | 7.99  | 2020-06-20 | 3   | 4.5
Ski Bunny Bea        | Sports        | pink and white       | 9.5  | 7.99  | 2021-12-01 | 2   | 4.3
Marathon Mo          | Sports        | orange               | 9.0  | 6.99  | 2022-04-01 | 2   | 4.2
Cricket Colin        | Sports        | white                | 9.0  | 7.49  | 2023-06-01 | 1   | 4.1
Rugby Ron            | Sports        | red                  | 10.0 | 7.99  | 2023-09-08 | 2   | 4.3
Unicorn Una          | Fairy Tale    | white and rainbow    | 10.5 | 9.99  | 2019-03-01 | 5   | 4.6
Dragon Drake         | Fairy Tale    | green                | 11.0 | 10.49 | 2020-03-01 | 4   | 4.5
Mermaid Marina       | Fairy Tale    | teal                 | 10.0 | 9.49  | 2021-03-01 | 4   | 4.5
Wizard Waddles       | Fairy Tale    | purple               | 10.5 | 9.99  | 2022-03-01 | 3   | 4.4
Princess Paddle      | Fairy Tale    | pink                 | 9.5  | 8.99  | 2023-03-01 | 2   | 4.3
Sir Quacksalot       | Fairy Tale    | silver               | 10.5 | 9.99  | 2024-03-01 | 3   | 4.4
Doctor Dabble        | Working Ducks | white                | 9.0  | 7.49  | 2018-03-01 | 2   | 4.3
Chef Quackers        | Working Ducks | white                | 9.0  | 7.49  | 2019-05-01 | 3   | 4.4
Firefighter Fred     | Working Ducks | red                  | 9.5  | 7.99  | 2020-05-04 | 3   | 4.5
Detective Duckworth  | Working Ducks | brown                | 9.5  | 7.99  | 2021-05-01 | 2   | 4.3
Professor Puddle     | Working Ducks | tweed brown          | 9.0  | 7.99  | 2022-05-01 | 2   | 4.2
Pilot Penny          | Working Ducks | sky blue             | 9.5  | 8.49  | 2025-05-01 | 3   | 4.5
"""

LIMITED_EDITION = frozenset({"Aurora", "Frosty Feathers", "Nutcracker Quack"})
"""The 2025 limited-edition Holiday trio: numbered runs of `LIMITED_RUN`, at most 2 per order."""
SOLD_OUT = frozenset({"Midnight Mallard", "Rugby Ron", "Wizard Waddles"})


def _material(name: str, collection: str) -> str:
    if collection == "Bath Spa":
        return "natural rubber"
    return "silicone" if name == "Mini Sunny" else "recycled vinyl"


def catalogue() -> list[Duck]:
    """Return the 60 ducks of the catalogue, in `duck_id` order."""
    ducks = []
    lines = [line for line in _CATALOGUE.splitlines() if line and not line.startswith("#")]
    for duck_id, line in enumerate(lines, start=1):
        name, collection, color, size, price, launched, popularity, quality = (
            cell.strip() for cell in line.split("|")
        )
        material = _material(name, collection)
        ducks.append(
            Duck(
                duck_id=duck_id,
                name=name,
                collection=collection,
                color=color,
                material=material,
                squeaks=material == "recycled vinyl" and name != "Jingle Duck",
                size_cm=Decimal(size),
                price=Decimal(price),
                launched=date.fromisoformat(launched),
                popularity=float(popularity),
                quality=float(quality),
                limited=name in LIMITED_EDITION,
            )
        )
    return ducks
