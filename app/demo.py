"""Deterministic demo data for a first run; every client goes through the client services."""

import os
import random
import secrets

import phonenumbers
from flask import current_app
from sqlalchemy import func, select

from .clients import services as client_services
from .clients.models import Client, ClientStatus, ContactOrigin, CustomField, FeeGroup, FunnelStage
from .extensions import db
from .organisation.models import Desk, Project

PROJECTS = [("Acme Europe", "ACME-EU", ["Berlin Sales", "Madrid Sales", "Premium Support"]),
            ("Acme USA", "ACME-US", ["New York Sales", "Retention", "VIP"]),
            ("Globex Markets", "GLOBEX", ["Onboarding", "Compliance Desk"])]
STATUSES = [("New", {"es": "Nuevo", "ru": "Новый"}, "#3c8dbc", 10, True),
            ("Contacted", {"es": "Contactado", "ru": "Связались"}, "#00a65a", 20, False),
            ("VIP", {"es": "VIP", "ru": "VIP"}, "#f39c12", 30, False),
            ("High-Risk", {"es": "Alto riesgo", "ru": "Высокий риск"}, "#dd4b39", 40, False)]
ORIGINS = [("Website", {"es": "Sitio web", "ru": "Сайт"}), ("Portal", {"es": "Portal", "ru": "Портал"}),
           ("Commercial", {"es": "Comercial", "ru": "Коммерческий"}),
           ("Referral", {"es": "Recomendación", "ru": "Рекомендация"})]
FEE_GROUPS = [("Standard", {"es": "Estándar", "ru": "Стандарт"}), ("Reduced", {"es": "Reducida", "ru": "Сниженная"})]
STAGES = [("personal", "Lead", {"es": "Prospecto", "ru": "Лид"}, 10),
          ("personal", "Qualified", {"es": "Calificado", "ru": "Квалифицирован"}, 20),
          ("personal", "Customer", {"es": "Cliente", "ru": "Клиент"}, 30),
          ("business", "Discovery", {"es": "Descubrimiento", "ru": "Знакомство"}, 10),
          ("business", "Contract", {"es": "Contrato", "ru": "Договор"}, 20)]
STAFF = [("maria", "Maria", "Lopez", "Manager", "ACME-EU", None),
         ("jonas", "Jonas", "Becker", "Agent", "ACME-EU", "Berlin Sales"),
         ("lucia", "Lucía", "García", "Agent", "ACME-EU", "Madrid Sales"),
         ("olga", "Olga", "Ivanova", "Agent", "ACME-EU", "Premium Support"),
         ("tom", "Tom", "Miller", "Manager", "ACME-US", None),
         ("sarah", "Sarah", "Johnson", "Agent", "ACME-US", "New York Sales"),
         ("mike", "Mike", "Brown", "Agent", "ACME-US", "Retention"),
         ("emma", "Emma", "Davis", "Agent", "ACME-US", "VIP"),
         ("ivan", "Ivan", "Petrov", "Manager", "GLOBEX", None),
         ("nina", "Nina", "Smirnova", "Agent", "GLOBEX", "Onboarding"),
         ("claire", "Claire", "Martin", "Compliance", "GLOBEX", None),
         ("viktor", "Viktor", "Sokolov", "Viewer", "ACME-EU", None)]
FIRST = ["Anna", "Ben", "Carla", "David", "Elena", "Farid", "Greta", "Hugo", "Irina", "Jakub", "Kira", "Luis",
         "Mei", "Nikolai", "Olivia", "Pablo", "Quentin", "Rosa", "Sven", "Tatiana", "Umar", "Vera", "Wei", "Ximena"]
LAST = ["Schmidt", "Garcia", "Ivanov", "Smith", "Rossi", "Dubois", "Kowalski", "Novak", "Jensen", "Silva",
        "O'Brien", "Müller", "Fernández", "Kuznetsova", "Nguyen", "Yilmaz"]
COUNTRIES = ["DE", "ES", "US", "GB", "FR", "IT", "RU", "PL", "NL", "SE", "MX", "BR"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "mail.ru"]
TAGS = ["forex", "crypto", "stocks", "newsletter", "webinar", "mobile"]


def _phone(rng, region):
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    national = str(example.national_number)
    for _ in range(50):
        candidate = national[:-4] + f"{rng.randrange(10000):04d}"
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def _settings():
    if db.session.scalar(select(func.count(ClientStatus.id))):
        return
    for label, tr, colour, order, default in STATUSES:
        db.session.add(ClientStatus(label=label, label_translations=tr, colour=colour, order=order,
                                    is_default=default, active=True))
    for label, tr in ORIGINS:
        db.session.add(ContactOrigin(label=label, label_translations=tr, builtin=True, active=True))
    for label, tr in FEE_GROUPS:
        db.session.add(FeeGroup(label=label, label_translations=tr, active=True))
    for ctype, label, tr, order in STAGES:
        db.session.add(FunnelStage(client_type=ctype, label=label, label_translations=tr, order=order, active=True))
    db.session.add(CustomField(key="preferred_language", label="Preferred language",
                               label_translations={"es": "Idioma preferido", "ru": "Предпочитаемый язык"},
                               field_type="select", options=["English", "Español", "Русский"], order=10))
    db.session.add(CustomField(key="newsletter", label="Newsletter", field_type="boolean", order=20,
                               label_translations={"es": "Boletín", "ru": "Рассылка"}))
    db.session.commit()


def _org():
    projects = {}
    for name, key, desks in PROJECTS:
        project = db.session.scalars(select(Project).where(Project.key == key)).first()
        if project is None:
            project = Project(name=name, key=key, description=f"Demo project {name}", active=True)
            db.session.add(project)
            db.session.flush()
            for desk_name in desks:
                db.session.add(Desk(project=project, name=desk_name, label=desk_name, active=True))
        projects[key] = project
    db.session.commit()
    return projects


def _staff(projects, password):
    sm = current_app.appbuilder.sm
    created = []
    for username, first, last, role_name, project_key, desk_name in STAFF:
        user = sm.find_user(username=username)
        if user is None:
            user = sm.add_user(username, first, last, f"{username}@clientdesk.example", sm.find_role(role_name),
                               password)
            created.append(username)
        project = projects[project_key]
        if project not in user.projects:
            user.projects.append(project)
        if desk_name:
            desk = next(d for d in project.desks if d.name == desk_name)
            if desk not in user.desks:
                user.desks.append(desk)
    db.session.commit()
    return created


def seed(clients=500, seed=42):
    """Create the demo organisation and `clients` clients unless they already exist."""
    from .core.actor import current_actor
    rng = random.Random(seed)
    _settings()
    projects = _org()
    password = os.environ.get("DEMO_PASSWORD") or secrets.token_urlsafe(10) + "A1!"
    created_staff = _staff(projects, password)
    existing = db.session.scalar(select(func.count(Client.id))) or 0
    sm = current_app.appbuilder.sm
    actor = sm.get_user_by_id(current_actor().user_id) if current_actor().user_id else None
    statuses = db.session.scalars(select(ClientStatus)).all()
    origins = db.session.scalars(select(ContactOrigin)).all()
    made = 0
    for i in range(existing, clients):
        project = rng.choice(list(projects.values()))
        desk = rng.choice(project.desks + [None])
        eligible = [u for u in project.users if u.active and (desk is None or desk in u.desks)]
        manager = rng.choice(eligible + [None]) if eligible else None
        first, last = rng.choice(FIRST), rng.choice(LAST)
        business = rng.random() < 0.1
        country = rng.choice(COUNTRIES)
        data = {
            "client_type": "business" if business else "personal",
            "email": f"{first}.{last}.{i}@{rng.choice(DOMAINS)}".lower().replace("'", ""),
            "first_name": first, "last_name": last,
            "company_name": f"{last} {rng.choice(['GmbH', 'Ltd', 'S.L.', 'Inc'])}" if business else None,
            "phone": _phone(rng, country), "country": country, "city": rng.choice(["Berlin", "Madrid", "Austin",
                                                                                   "Lyon", "Kazan", "Malmö"]),
            "project_id": project.id, "desk_id": desk.id if desk else None,
            "manager_id": manager.id if manager else None,
            "status_id": rng.choice(statuses).id, "contact_origin_id": rng.choice(origins).id,
            "rating": rng.randrange(4), "tags": rng.sample(TAGS, rng.randrange(3)),
            "description": rng.choice(["", "Prefers e-mail.", "Asked about fees (50% discount?)",
                                       "Call back after 18:00", "VIP candidate"]),
            "affiliate_id": f"AFF{rng.randrange(100):03d}", "verification_status": rng.choice(
                ["init", "pending", "approved", "rejected"]),
            "custom_fields": {"preferred_language": rng.choice(["English", "Español", "Русский"])},
        }
        clean = client_services.validate_client_data(data, actor)
        db.session.add(client_services.build_client(clean, actor))
        made += 1
        if made % 100 == 0:
            db.session.commit()
    db.session.commit()
    lines = [f"Demo data: {len(projects)} projects, {len(STAFF)} staff users, {made} new clients "
             f"({existing + made} in total)."]
    if created_staff:
        lines.append(f"Staff users ({', '.join(created_staff)}) share the password: {password}")
    return "\n".join(lines)
