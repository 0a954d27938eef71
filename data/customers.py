"""The sample shop's customers: where they live, their names and e-mail addresses, when they joined.

Generated from a seeded `random.Random` handed in by `build_sample`, so the same seed gives the
same customers.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

from ollagraph.data.catalogue import FIRST_DAY, LAST_DAY

N_CUSTOMERS = 520


_UK_FIRST = "Oliver Amelia Harry Isla George Ava Jack Emily Charlie Sophie Thomas Grace James Lily"
_US_FIRST = "Emma Liam Olivia Noah Mia Ethan Harper Mason Abigail Logan Madison Lucas Chloe Aiden"
# country: (customer weight, first names, last names, cities with weights)
_COUNTRIES: dict[str, tuple[float, str, str, str]] = {
    "United Kingdom": (
        36,
        _UK_FIRST + " William Freya Alfie Poppy Henry Evie Oscar Ruby Archie Daisy",
        "Smith Jones Taylor Brown Williams Wilson Evans Roberts Walker Wright Robinson Thompson "
        "Hughes Green Hall Clarke Patel Khan Wood Harris Lewis",
        "London:5 Bristol:4 Manchester:2 Birmingham:2 Leeds:1 Glasgow:1 Edinburgh:1 Cardiff:1 "
        "Bath:1 Brighton:1 Liverpool:1 Norwich:1 York:1",
    ),
    "United States": (
        13,
        _US_FIRST + " Ella Jackson",
        "Johnson Miller Davis Garcia Rodriguez Martinez Anderson Moore Jackson Martin Lee White",
        "New_York:3 Los_Angeles:2 Chicago:2 Seattle:1 Austin:1 Boston:1 Portland:1 Denver:1",
    ),
    "Germany": (
        11,
        "Lukas Mia Leon Hannah Finn Emma Jonas Lea Paul Lena Felix Marie",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Hoffmann Schulz",
        "Berlin:3 Hamburg:2 Munich:2 Cologne:1 Frankfurt:1 Leipzig:1",
    ),
    "Ireland": (
        8,
        "Seán Aoife Conor Niamh Cian Saoirse Oisín Ciara Darragh Róisín",
        "Murphy Kelly O'Sullivan Walsh O'Brien Byrne Ryan O'Connor Doyle McCarthy",
        "Dublin:4 Cork:2 Galway:1 Limerick:1 Waterford:1",
    ),
    "Netherlands": (
        7,
        "Daan Emma Sem Julia Lucas Tess Finn Sophie Levi Zoë",
        "de_Jong Jansen de_Vries van_den_Berg Bakker Visser Smit Meijer Mulder",
        "Amsterdam:3 Rotterdam:2 Utrecht:1 The_Hague:1 Eindhoven:1 Groningen:1",
    ),
    "France": (
        6,
        "Lucas Léa Hugo Chloé Louis Manon Jules Camille Arthur Inès",
        "Martin Bernard Dubois Thomas Robert Petit Durand Leroy Moreau Laurent",
        "Paris:4 Lyon:2 Marseille:1 Toulouse:1 Nantes:1 Bordeaux:1",
    ),
    "Canada": (
        5,
        _US_FIRST,
        "Tremblay Roy Gagnon Smith Brown Wilson MacDonald Campbell",
        "Toronto:3 Vancouver:2 Montreal:2 Ottawa:1 Calgary:1",
    ),
    "Australia": (
        5,
        "Jack Charlotte William Olivia Thomas Isla Noah Mia Cooper Matilda",
        "Smith Jones Williams Brown Wilson Taylor Nguyen Kelly",
        "Sydney:3 Melbourne:3 Brisbane:1 Perth:1 Adelaide:1",
    ),
    "Sweden": (
        4,
        "Erik Astrid Lars Elsa Oskar Maja Nils Ebba Hugo Alva",
        "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson",
        "Stockholm:3 Gothenburg:2 Malmö:1 Uppsala:1",
    ),
    "Spain": (
        3,
        "Hugo Lucía Mateo Sofía Pablo Martina Daniel Paula Alejandro Carmen",
        "García Fernández González Rodríguez López Martínez Sánchez Pérez",
        "Madrid:3 Barcelona:3 Valencia:1 Seville:1 Bilbao:1",
    ),
    "Japan": (
        2,
        "Haruto Yui Sota Hina Yuto Aoi Ren Sakura",
        "Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura",
        "Tokyo:3 Osaka:2 Kyoto:1 Yokohama:1 Sapporo:1",
    ),
}
_EUROPE = frozenset({"Germany", "Ireland", "Netherlands", "France", "Sweden", "Spain"})
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example")


def region(country: str) -> str:
    """Return the shipping region of `country`: "UK", "Europe" or "Rest of world"."""
    if country == "United Kingdom":
        return "UK"
    return "Europe" if country in _EUROPE else "Rest of world"


@dataclass(frozen=True)
class Customer:
    """A web shop account."""

    customer_id: int
    name: str
    email: str
    country: str
    city: str
    signed_up: date
    appetite: float


def _words(text: str) -> list[str]:
    return [word.replace("_", " ") for word in text.split()]


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _signup_day(rng: random.Random) -> date:
    if rng.random() < 0.35:  # accounts carried over from the old shop (2019-2023)
        return date(2019, 1, 1) + timedelta(days=rng.randrange(5 * 365))
    return FIRST_DAY + timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days - 10))


def generate_customers(rng: random.Random) -> list[Customer]:
    """Make the shop's customers, numbered from 1, in sign-up order.

    Args:
        rng: The builder's seeded generator (its state advances).
    """
    countries = list(_COUNTRIES)
    weights = [_COUNTRIES[c][0] for c in countries]
    drafts: list[tuple[date, str, str, str, float]] = []
    for _ in range(N_CUSTOMERS):
        country = rng.choices(countries, weights)[0]
        _, firsts, lasts, city_spec = _COUNTRIES[country]
        spec = [item.split(":") for item in city_spec.split()]
        city = rng.choices([c.replace("_", " ") for c, _ in spec], [float(w) for _, w in spec])[0]
        name = f"{rng.choice(_words(firsts))} {rng.choice(_words(lasts))}"
        appetite = 0.0 if rng.random() < 0.1 else min(rng.lognormvariate(0, 0.8), 6.0)
        if country == "United Kingdom":
            appetite *= 1.3
        drafts.append((_signup_day(rng), name, country, city, appetite))
    drafts.sort(key=lambda draft: draft[0])  # ids grow with the sign-up date
    customers: list[Customer] = []
    taken: set[str] = set()
    for customer_id, (signed_up, name, country, city, appetite) in enumerate(drafts, start=1):
        first, _, last = name.partition(" ")
        local = f"{_ascii_slug(first)}.{_ascii_slug(last)}"
        email = f"{local}@{rng.choice(_EMAIL_DOMAINS)}"
        if email in taken:
            email = f"{local}{customer_id}@{rng.choice(_EMAIL_DOMAINS)}"
        taken.add(email)
        customers.append(Customer(customer_id, name, email, country, city, signed_up, appetite))
    return customers
