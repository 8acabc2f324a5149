"""Deterministic messy client CSV for the import/export benchmarks (spec 10, "Reference data").

20 projects, 100 desks (5 per project), 200 managers (10 per project), ~1% duplicate
e-mails, a few % messy values (country as name/ISO2/ISO3 in any case, stray spaces,
mixed-case e-mails, spaced phone numbers) and ~1% invalid rows (bad e-mail or phone).

    python bench/generate_clients_csv.py --rows 100000 --out /tmp/clients_100k.csv
"""

import argparse
import csv
import random

PROJECTS = 20
DESKS_PER_PROJECT = 5
MANAGERS_PER_PROJECT = 10
FIRST = ["Anna", "Ben", "Carla", "David", "Elena", "Felix", "Greta", "Hugo", "Irina", "Jonas", "Katja", "Luis",
         "Marta", "Nico", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tanja", "Ugo", "Vera", "Willi", "Ximena"]
LAST = ["Müller", "García", "Ivanova", "Schmidt", "López", "Petrov", "Fischer", "Martín", "Smirnov", "Weber",
        "Sánchez", "Kuznetsov", "Wagner", "Pérez", "Popov", "Becker", "Gómez", "Sokolov", "Hoffmann", "Díaz"]
COUNTRIES = [("DE", "DEU", "Germany"), ("ES", "ESP", "Spain"), ("FR", "FRA", "France"), ("IT", "ITA", "Italy"),
             ("GB", "GBR", "United Kingdom"), ("PL", "POL", "Poland"), ("NL", "NLD", "Netherlands"),
             ("AT", "AUT", "Austria")]
CITIES = ["Berlin", "Madrid", "Paris", "Rome", "London", "Warsaw", "Amsterdam", "Vienna"]
STATUSES = ["New", "VIP", "new", "High-Risk", ""]
TAGS = ["forex", "crypto", "stocks", "bonds", "vip", "newsletter"]
HEADER = ["email", "firstName", "lastName", "phone", "billing.country", "billing.city", "project", "desk",
          "manager", "status", "type", "gender", "dateOfBirth", "tags", "externalId", "affiliateId"]


def org():
    """The organisation the file refers to (the benchmark seeds exactly this)."""
    projects = [(f"B{p:02d}", f"Bench Project {p:02d}") for p in range(1, PROJECTS + 1)]
    desks = [(key, f"{key}-D{d}") for key, _ in projects for d in range(1, DESKS_PER_PROJECT + 1)]
    managers = [(key, f"mgr{p:02d}{m:02d}", f"mgr{p:02d}{m:02d}@bench.test")
                for p, (key, _) in enumerate(projects, start=1) for m in range(1, MANAGERS_PER_PROJECT + 1)]
    return projects, desks, managers


def phone(rnd, n):
    if n % 2:
        digits = f"{n % 100_000_000:08d}"
        return f"+49 15{rnd.choice('127')} {digits}" if rnd.random() < 0.05 else f"+4915{rnd.choice('127')}{digits}"
    return f"+346{n % 100_000_000:08d}"


def rows(count, seed=20261124):
    rnd = random.Random(seed)
    projects, desks, managers = org()
    emails = []
    for n in range(1, count + 1):
        p = rnd.randrange(PROJECTS)
        key, name = projects[p]
        email = f"client{n:07d}@example{n % 50}.com"
        if emails and rnd.random() < 0.01:
            email = rnd.choice(emails[-5000:])          # a duplicate key inside the file
        emails.append(email)
        if rnd.random() < 0.03:
            email = f"  {email.upper()} "               # messy but valid
        if rnd.random() < 0.005:
            email = email.replace("@", " at ")          # invalid
        country = rnd.choice(COUNTRIES)
        c = rnd.choice(country) if rnd.random() < 0.9 else rnd.choice(country).lower()
        desk = rnd.choice([d for k, d in desks if k == key]) if rnd.random() < 0.7 else ""
        mgr = rnd.choice([m for k, m, _ in managers if k == key]) if desk and rnd.random() < 0.6 else ""
        ph = phone(rnd, n) if rnd.random() > 0.005 else "12345"
        yield [email, rnd.choice(FIRST), rnd.choice(LAST), ph, c, rnd.choice(CITIES),
               rnd.choice([key, name, key.lower()]), desk, mgr, rnd.choice(STATUSES),
               "Personal", rnd.choice(["male", "female", "Female", ""]),
               f"19{rnd.randrange(50, 99)}-0{rnd.randrange(1, 9)}-1{rnd.randrange(0, 9)}",
               ",".join(rnd.sample(TAGS, rnd.randrange(0, 3))), f"X{n}", f"aff{n % 97}"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=20261124)
    a = ap.parse_args()
    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows(a.rows, a.seed))


if __name__ == "__main__":
    main()
