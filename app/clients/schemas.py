"""REST schemas for clients: explicit allowlists of what the API reads and writes (R4)."""

from marshmallow import RAISE, Schema, fields, validate

from .models import CLIENT_TYPES, GENDERS, OUTCOMES, RISK_LEVELS, STATES, VERIFICATION_LEVELS, VERIFICATION_STATUSES


def _str(max_len, **kw):
    return fields.String(allow_none=True, validate=validate.Length(max=max_len), **kw)


def _choice(values):
    return fields.String(allow_none=True, validate=validate.OneOf(values + ("",)))


class ClientWriteSchema(Schema):
    """Fields a client may be created or updated with; anything else is refused with 422."""

    class Meta:
        unknown = RAISE

    client_type = fields.String(validate=validate.OneOf(CLIENT_TYPES))
    email = fields.String(validate=validate.Length(max=254))
    project_id = fields.Integer()
    first_name = _str(100)
    last_name = _str(100)
    company_name = _str(200)
    phone = _str(40)
    additional_phone = _str(40)
    date_of_birth = fields.Date(allow_none=True)
    external_id = _str(64)
    passport_number = _str(64)
    nationality = _str(100)
    gender = _choice(GENDERS)
    risk_level = _choice(RISK_LEVELS)
    aml_screening = _str(2000)
    country = _str(100)
    region = _str(100)
    city = _str(100)
    address = _str(255)
    postcode = _str(20)
    desk_id = fields.Integer(allow_none=True)
    manager_id = fields.Integer(allow_none=True)
    fee_group_id = fields.Integer(allow_none=True)
    affiliate_id = _str(64)
    campaign_id = _str(64)
    source_id = _str(64)
    sub_id = _str(64)
    verification_level = _choice(VERIFICATION_LEVELS)
    verification_status = _choice(VERIFICATION_STATUSES)
    contact_origin_id = fields.Integer(allow_none=True)
    status_id = fields.Integer(allow_none=True)
    funnel_stage_id = fields.Integer(allow_none=True)
    state = fields.String(validate=validate.OneOf(STATES))
    outcome = _choice(OUTCOMES)
    rating = fields.Integer(validate=validate.Range(min=0, max=3))
    tags = fields.List(fields.String(validate=validate.Length(max=64)), allow_none=True)
    description = fields.String(allow_none=True)  # the service explains the 2,000 limit
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=128))
    custom_fields = fields.Dict(keys=fields.String(), allow_none=True)
    meta = fields.Dict(keys=fields.String(), values=fields.String(allow_none=True), allow_none=True)


class ClientReadSchema(Schema):
    """What the API shows of a client (no password hash; passport and DOB only on the item view)."""

    id = fields.Integer()
    uid = fields.String()
    client_type = fields.String()
    email = fields.String()
    first_name = fields.String(allow_none=True)
    last_name = fields.String(allow_none=True)
    company_name = fields.String(allow_none=True)
    full_name = fields.String()
    phone = fields.String(allow_none=True)
    additional_phone = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    region = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    address = fields.String(allow_none=True)
    postcode = fields.String(allow_none=True)
    project_id = fields.Integer()
    desk_id = fields.Integer(allow_none=True)
    manager_id = fields.Integer(allow_none=True)
    status_id = fields.Integer(allow_none=True)
    state = fields.String()
    outcome = fields.String()
    processed = fields.Boolean()
    processed_at = fields.DateTime(allow_none=True)
    rating = fields.Integer()
    description = fields.String(allow_none=True)
    affiliate_id = fields.String(allow_none=True)
    campaign_id = fields.String(allow_none=True)
    source_id = fields.String(allow_none=True)
    sub_id = fields.String(allow_none=True)
    external_id = fields.String(allow_none=True)
    verification_level = fields.String(allow_none=True)
    verification_status = fields.String(allow_none=True)
    tags = fields.Method("_tags")
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    custom_fields = fields.Dict()
    meta = fields.Dict()

    def _tags(self, obj):
        return [t.name for t in obj.tags]


class ClientDetailSchema(ClientReadSchema):
    date_of_birth = fields.Date(allow_none=True)
    passport_number = fields.String(allow_none=True)
    nationality = fields.String(allow_none=True)
    gender = fields.String(allow_none=True)
    risk_level = fields.String(allow_none=True)
    aml_screening = fields.String(allow_none=True)
    fee_group_id = fields.Integer(allow_none=True)
    contact_origin_id = fields.Integer(allow_none=True)
    funnel_stage_id = fields.Integer(allow_none=True)
    last_login_at = fields.DateTime(allow_none=True)
    last_action_at = fields.DateTime(allow_none=True)
    future_action_at = fields.DateTime(allow_none=True)
    actions_exist = fields.Boolean()
    last_duplicate_at = fields.DateTime(allow_none=True)
