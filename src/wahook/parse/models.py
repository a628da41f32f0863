"""msgspec Structs for the WhatsApp Cloud API webhook payloads.

Every Struct ignores unknown keys (msgspec's default), so new keys Meta adds never break
decoding. Keys that Meta sends with a type that varies (timestamps, error codes, prices)
are typed as unions; ``timestamps.to_epoch`` turns any of them into seconds.

Names follow Meta's keys; ``from`` is renamed ``from_`` in Python.
"""

from __future__ import annotations

import json

import msgspec
from msgspec import Struct, field

# A JSON scalar as Meta sends it where the documented type drifts (number vs string).
Scalar = str | int | float


class Base(Struct, frozen=True, omit_defaults=True, gc=False):
    """Common base: frozen, and encodes back without the defaults it filled in.

    ``gc=False``: decoded webhooks hold no reference cycles, so the garbage collector need
    not track these objects (a large share of decoding time otherwise). Do not build cycles
    through their list fields."""


# --- shared pieces -------------------------------------------------------------------


class ErrorData(Base, frozen=True):
    details: str | None = None


class Error(Base, frozen=True):
    """An error object (§5.1). ``code`` is an int, but Groups webhooks quote it."""

    code: int | str | None = None
    title: str | None = None
    message: str | None = None
    error_data: ErrorData | None = None
    href: str | None = None


class Metadata(Base, frozen=True):
    display_phone_number: str | None = None
    phone_number_id: str | None = None


class Profile(Base, frozen=True):
    name: str | None = None
    username: str | None = None
    country_code: str | None = None


class Contact(Base, frozen=True):
    """The sender (or, on statuses, the recipient) profile of a messaging value."""

    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None
    profile: Profile | None = None
    identity_key_hash: str | None = None

    @property
    def name(self) -> str | None:
        return self.profile.name if self.profile is not None else None


# --- incoming message content -------------------------------------------------------


class Text(Base, frozen=True):
    body: str = ""


class Media(Base, frozen=True):
    """image, video, audio, document and sticker share one shape."""

    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class Location(Base, frozen=True):
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Name(Base, frozen=True):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    suffix: str | None = None
    prefix: str | None = None


class Phone(Base, frozen=True):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class Email(Base, frozen=True):
    email: str | None = None
    type: str | None = None


class Address(Base, frozen=True):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None


class Org(Base, frozen=True):
    company: str | None = None
    department: str | None = None
    title: str | None = None


class Url(Base, frozen=True):
    url: str | None = None
    type: str | None = None


class SharedContact(Base, frozen=True):
    """One vCard-like item of a ``contacts`` message (§3.6)."""

    name: Name | None = None
    phones: tuple[Phone, ...] = ()
    emails: tuple[Email, ...] = ()
    addresses: tuple[Address, ...] = ()
    org: Org | None = None
    urls: tuple[Url, ...] = ()
    birthday: str | None = None


class ButtonReply(Base, frozen=True):
    id: str | None = None
    title: str | None = None


class ListReply(Base, frozen=True):
    id: str | None = None
    title: str | None = None
    description: str | None = None


class NfmReply(Base, frozen=True):
    """A Flow completion or an address message. ``response_json`` is JSON *in a string*."""

    response_json: str | None = None
    body: str | None = None
    name: str | None = None

    def response(self) -> object | None:
        """``response_json`` parsed, or None when it is absent or not valid JSON."""
        if self.response_json is None:
            return None
        try:
            parsed: object = json.loads(self.response_json)
        except (ValueError, RecursionError):
            return None
        return parsed


class CallPermissionReply(Base, frozen=True):
    response: str | None = None
    expiration_timestamp: Scalar | None = None
    response_source: str | None = None
    is_permanent: bool | None = None


class Interactive(Base, frozen=True):
    type: str | None = None
    button_reply: ButtonReply | None = None
    list_reply: ListReply | None = None
    nfm_reply: NfmReply | None = None
    call_permission_reply: CallPermissionReply | None = None

    @property
    def reply_id(self) -> str | None:
        """The id the user picked (button or list row), whatever the reply kind."""
        reply = self.button_reply or self.list_reply
        return reply.id if reply is not None else None


class Button(Base, frozen=True):
    """A tap on a template quick-reply button."""

    payload: str | None = None
    text: str | None = None


class Reaction(Base, frozen=True):
    """``emoji`` absent or ``""`` means the user removed their reaction."""

    message_id: str | None = None
    emoji: str | None = None

    @property
    def removed(self) -> bool:
        return not self.emoji


class ProductItem(Base, frozen=True):
    product_retailer_id: str | None = None
    quantity: Scalar | None = None
    item_price: Scalar | None = None
    currency: str | None = None


class Order(Base, frozen=True):
    catalog_id: str | None = None
    text: str | None = None
    product_items: tuple[ProductItem, ...] = ()


class System(Base, frozen=True):
    body: str | None = None
    type: str | None = None
    wa_id: str | None = None
    new_wa_id: str | None = None
    user_id: str | None = None
    customer: str | None = None
    identity: str | None = None


class Unsupported(Base, frozen=True):
    type: str | None = None


class ReferredProduct(Base, frozen=True):
    catalog_id: str | None = None
    product_retailer_id: str | None = None


class Context(Base, frozen=True):
    from_: str | None = field(default=None, name="from")
    id: str | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: ReferredProduct | None = None


class WelcomeMessage(Base, frozen=True):
    text: str | None = None


class Referral(Base, frozen=True):
    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    body: str | None = None
    headline: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None
    welcome_message: WelcomeMessage | None = None


class Identity(Base, frozen=True):
    acknowledged: bool | None = None
    created_timestamp: Scalar | None = None
    hash: str | None = None


class Revoke(Base, frozen=True):
    original_message_id: str | None = None


class Message(Base, frozen=True):
    """One incoming message (``value.messages[]``), any type.

    ``type`` is kept as sent. The content sits under the key of the same name; types this
    Struct does not know keep their content only in the event's ``raw`` bytes.
    """

    id: str
    type: str = "unknown"
    from_: str = field(default="", name="from")
    from_user_id: str | None = None
    from_parent_user_id: str | None = None
    timestamp: Scalar | None = None
    group_id: str | None = None
    to: str | None = None
    context: Context | None = None
    referral: Referral | None = None
    identity: Identity | None = None
    errors: tuple[Error, ...] = ()
    text: Text | None = None
    image: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    document: Media | None = None
    sticker: Media | None = None
    location: Location | None = None
    contacts: list[SharedContact] | None = None
    interactive: Interactive | None = None
    button: Button | None = None
    reaction: Reaction | None = None
    order: Order | None = None
    system: System | None = None
    unsupported: Unsupported | None = None
    edit: Edit | None = None
    revoke: Revoke | None = None

    @property
    def sender(self) -> str:
        """Who sent it: the phone (``from``) when Meta gives one, else the BSUID."""
        return self.from_ or self.from_user_id or ""

    @property
    def media(self) -> Media | None:
        return self.image or self.video or self.audio or self.document or self.sticker

    @property
    def text_body(self) -> str | None:
        """The text a person wrote: text body, media caption, or button text."""
        if self.text is not None:
            return self.text.body
        media = self.media
        if media is not None and media.caption is not None:
            return media.caption
        if self.button is not None:
            return self.button.text
        return None


class EditedMessage(Base, frozen=True):
    """The new content of an edited message: a message without id/from/timestamp."""

    type: str = "unknown"
    context: Context | None = None
    text: Text | None = None
    image: Media | None = None
    video: Media | None = None
    document: Media | None = None


class Edit(Base, frozen=True):
    original_message_id: str | None = None
    message: EditedMessage | None = None


# --- statuses ------------------------------------------------------------------------


class Origin(Base, frozen=True):
    type: str | None = None


class Conversation(Base, frozen=True):
    id: str | None = None
    expiration_timestamp: Scalar | None = None
    origin: Origin | None = None


class Pricing(Base, frozen=True):
    billable: bool | None = None
    pricing_model: str | None = None
    type: str | None = None
    category: str | None = None


class Status(Base, frozen=True):
    """One status of an outgoing message (``value.statuses[]``), ``status`` as sent."""

    id: str
    status: str
    timestamp: Scalar | None = None
    recipient_id: str | None = None
    recipient_type: str | None = None
    recipient_user_id: str | None = None
    recipient_parent_user_id: str | None = None
    recipient_participant_id: str | None = None
    recipient_participant_user_id: str | None = None
    recipient_participant_parent_user_id: str | None = None
    recipient_identity_key_hash: str | None = None
    biz_opaque_callback_data: str | None = None
    conversation: Conversation | None = None
    pricing: Pricing | None = None
    errors: tuple[Error, ...] = ()
    type: str | None = None


# --- other fields (§6) --------------------------------------------------------------


class TemplateStatusUpdate(Base, frozen=True):
    event: str | None = None
    message_template_id: int | str | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None
    reason: str | None = None
    message_template_category: str | None = None


class TemplateQualityUpdate(Base, frozen=True):
    previous_quality_score: str | None = None
    new_quality_score: str | None = None
    message_template_id: int | str | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None


class TemplateButton(Base, frozen=True):
    message_template_button_type: str | None = None
    message_template_button_text: str | None = None
    message_template_button_url: str | None = None
    message_template_button_phone_number: str | None = None


class TemplateComponentsUpdate(Base, frozen=True):
    message_template_id: int | str | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None
    message_template_element: str | None = None
    message_template_title: str | None = None
    message_template_footer: str | None = None
    message_template_buttons: tuple[TemplateButton, ...] = ()


class TemplateCategoryUpdate(Base, frozen=True):
    message_template_id: int | str | None = None
    message_template_name: str | None = None
    message_template_language: str | None = None
    new_category: str | None = None
    previous_category: str | None = None
    correct_category: str | None = None
    category_update_timestamp: Scalar | None = None


class PhoneNumberQualityUpdate(Base, frozen=True):
    display_phone_number: str | None = None
    event: str | None = None
    current_limit: str | None = None
    old_limit: str | None = None
    max_daily_conversations_per_business: Scalar | None = None


class PhoneNumberNameUpdate(Base, frozen=True):
    display_phone_number: str | None = None
    decision: str | None = None
    requested_verified_name: str | None = None
    rejection_reason: str | None = None


class AccountUpdate(Base, frozen=True):
    event: str | None = None
    phone_number: str | None = None
    country: str | None = None


class AccountReviewUpdate(Base, frozen=True):
    decision: str | None = None


class AlertInfo(Base, frozen=True):
    alert_severity: str | None = None
    alert_status: str | None = None
    alert_type: str | None = None
    alert_description: str | None = None


class AccountAlerts(Base, frozen=True):
    entity_type: str | None = None
    entity_id: str | None = None
    alert_info: AlertInfo | None = None


class BusinessCapabilityUpdate(Base, frozen=True):
    max_daily_conversation_per_phone: Scalar | None = None
    max_daily_conversations_per_business: Scalar | None = None
    max_phone_numbers_per_business: Scalar | None = None
    max_phone_numbers_per_waba: Scalar | None = None


class Security(Base, frozen=True):
    display_phone_number: str | None = None
    event: str | None = None
    requester: str | None = None


class Flows(Base, frozen=True):
    event: str | None = None
    flow_id: str | None = None
    message: str | None = None
    old_status: str | None = None
    new_status: str | None = None
    alert_state: str | None = None
    error_rate: float | None = None
    threshold: float | None = None


class PartnerSolutions(Base, frozen=True):
    event: str | None = None
    solution_id: str | None = None
    solution_status: str | None = None


class PaymentConfigurationUpdate(Base, frozen=True):
    configuration_name: str | None = None
    provider_name: str | None = None
    provider_mid: str | None = None
    status: str | None = None
    created_timestamp: Scalar | None = None
    updated_timestamp: Scalar | None = None


# Items of the messaging-style arrays other than messages/statuses.


class UserPreference(Base, frozen=True):
    wa_id: str | None = None
    user_id: str | None = None
    detail: str | None = None
    category: str | None = None
    value: str | None = None
    timestamp: Scalar | None = None


class CallSession(Base, frozen=True):
    sdp: str | None = None
    sdp_type: str | None = None


class Call(Base, frozen=True):
    id: str | None = None
    from_: str | None = field(default=None, name="from")
    to: str | None = None
    event: str | None = None
    timestamp: Scalar | None = None
    direction: str | None = None
    status: str | None = None
    start_time: Scalar | None = None
    end_time: Scalar | None = None
    duration: Scalar | None = None
    biz_opaque_callback_data: str | None = None
    session: CallSession | None = None
    errors: tuple[Error, ...] = ()


class StateSyncContact(Base, frozen=True):
    full_name: str | None = None
    first_name: str | None = None
    phone_number: str | None = None


class StateSync(Base, frozen=True):
    type: str | None = None
    action: str | None = None
    contact: StateSyncContact | None = None


class HistoryMetadata(Base, frozen=True):
    phase: Scalar | None = None
    chunk_order: Scalar | None = None
    progress: Scalar | None = None


class HistoryItem(Base, frozen=True):
    """One history chunk; its thread messages stay in the raw JSON (they can be thousands)."""

    metadata: HistoryMetadata | None = None
    errors: tuple[Error, ...] = ()


class Group(Base, frozen=True):
    group_id: str | None = None
    type: str | None = None
    timestamp: Scalar | None = None
    request_id: str | None = None
    subject: str | None = None
    errors: tuple[Error, ...] = ()


# field name -> Struct of the whole value, for fields whose value is one object.
VALUE_TYPES: dict[str, type[Base]] = {
    "message_template_status_update": TemplateStatusUpdate,
    "message_template_quality_update": TemplateQualityUpdate,
    "message_template_components_update": TemplateComponentsUpdate,
    "template_category_update": TemplateCategoryUpdate,
    "phone_number_quality_update": PhoneNumberQualityUpdate,
    "phone_number_name_update": PhoneNumberNameUpdate,
    "account_update": AccountUpdate,
    "account_review_update": AccountReviewUpdate,
    "account_alerts": AccountAlerts,
    "business_capability_update": BusinessCapabilityUpdate,
    "security": Security,
    "flows": Flows,
    "partner_solutions": PartnerSolutions,
    "payment_configuration_update": PaymentConfigurationUpdate,
}

# array key of a messaging-style value -> Struct of one item (messages/statuses apart).
ITEM_TYPES: dict[str, type[Base]] = {
    "errors": Error,
    "user_preferences": UserPreference,
    "calls": Call,
    "message_echoes": Message,
    "state_sync": StateSync,
    "history": HistoryItem,
    "groups": Group,
}

KNOWN_MESSAGE_TYPES = frozenset(
    {
        "text", "image", "audio", "video", "document", "sticker", "location", "contacts",
        "interactive", "button", "reaction", "order", "system", "unsupported", "unknown",
        "request_welcome", "edit", "revoke", "media_placeholder",
    }
)  # fmt: skip

KNOWN_STATUSES = frozenset({"sent", "delivered", "read", "played", "failed"})

# Statuses of calls (``statuses[]`` with ``type: "call"`` under the ``calls`` field).
KNOWN_CALL_STATUSES = frozenset({"RINGING", "ACCEPTED", "REJECTED"})

KNOWN_FIELDS = frozenset(
    {
        "messages", "calls", "user_preferences", "smb_message_echoes", "smb_app_state_sync",
        "history", "group_lifecycle_update", "group_participants_update",
        "group_settings_update", "group_status_update", "phone_number_username_update",
        "automatic_events", "account_settings_update", *VALUE_TYPES,
    }
)  # fmt: skip


def encode(obj: object) -> bytes:
    """JSON bytes of a Struct (or anything msgspec encodes)."""
    return msgspec.json.encode(obj)
