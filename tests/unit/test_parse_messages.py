"""Incoming messages (reference §2.1, §3): every type decodes to the values its fixture holds."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import load
from wahook.parse import ChangeEvent, Event, MessageEvent, decode
from wahook.parse.models import Media, Message

PNID = "106540352242922"
WABA = "102290129340398"


def events(name: str) -> list[Event]:
    n = decode(load(name))
    assert n.problems == []
    return list(n.events())


def messages(name: str) -> list[MessageEvent]:
    evs = events(name)
    assert all(isinstance(ev, MessageEvent) for ev in evs)
    return [ev for ev in evs if isinstance(ev, MessageEvent)]


def only(name: str) -> Message:
    (ev,) = messages(name)
    return ev.message


def test_text_with_escaped_unicode_and_its_envelope() -> None:
    (ev,) = messages("msg_text")
    assert (ev.field, ev.waba_id, ev.phone_number_id, ev.display_phone_number) == (
        "messages",
        WABA,
        PNID,
        "15550783881",
    )
    assert ev.kind == "message"
    assert ev.type == "text"
    assert ev.known
    assert ev.wamid == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert ev.timestamp == 1749416383
    assert ev.message.timestamp == "1749416383"  # as sent
    assert ev.message.from_ == "16505551234"
    assert ev.message.sender == "16505551234"
    assert ev.message.text is not None
    assert ev.message.text.body == "Café ☕ 😀 مرحبا"
    assert ev.message.text_body == "Café ☕ 😀 مرحبا"
    assert ev.contact is not None
    assert (ev.contact.wa_id, ev.contact.name) == ("16505551234", "Shéena Nelson")
    assert ev.path == "entry[0].changes[0].value.messages[0]"
    # raw is the item's exact bytes, escapes and all
    assert ev.raw in load("msg_text")
    assert b"\\u2615" in ev.raw
    assert json.loads(ev.raw)["id"] == ev.wamid


def test_text_with_literal_unicode() -> None:
    (ev,) = messages("msg_text_literal_unicode")
    assert ev.message.text is not None
    assert ev.message.text.body == "مرحبا 👋🏽 — naïve 東京 🇧🇷"
    assert ev.contact is not None
    assert ev.contact.name == "أحمد 🌙"
    assert "👋🏽".encode() in ev.raw


def test_image_with_caption_url_and_forwarded_context() -> None:
    (ev,) = messages("msg_image")
    m = ev.message
    assert m.type == "image"
    assert m.image is not None
    assert m.image.id == "1003383421387256"
    assert m.image.mime_type == "image/jpeg"
    assert m.image.sha256 == "IdoDSfEoMfTc4ieD86ldmNLvRbPBi8rFo8Qk3n6cmuM="
    assert m.image.caption == "Our new storefront" == m.text_body
    assert m.image.url is not None
    assert m.image.url.startswith("https://lookaside.fbsbx.com/")
    assert m.media is m.image
    assert m.context is not None
    assert m.context.forwarded is True
    assert m.context.frequently_forwarded is None
    assert m.context.id is None
    assert ev.contact is not None
    assert ev.contact.identity_key_hash == "DF2lS5v2W6x="


def test_audio_voice_and_plain() -> None:
    voice, plain = (ev.message for ev in messages("msg_audio"))
    assert voice.audio == Media(
        id="1286148582820164",
        mime_type="audio/ogg; codecs=opus",
        sha256="9E2XnBEC5rJb8bM6b1IJ4qeVYbLvkOVGzmaM0anDJtY=",
        voice=True,
    )
    assert plain.audio is not None
    assert plain.audio.voice is False
    assert plain.audio.mime_type == "audio/mpeg"
    assert voice.text_body is None


def test_video_frequently_forwarded() -> None:
    m = only("msg_video")
    assert m.video is not None
    assert m.video.caption == "Unboxing"
    assert m.video.mime_type == "video/mp4"
    assert m.context is not None
    assert (m.context.forwarded, m.context.frequently_forwarded) == (True, True)


def test_document_filename() -> None:
    m = only("msg_document")
    assert m.document is not None
    assert m.document.filename == "lucky-shrub-invoice.pdf"
    assert m.document.mime_type == "application/pdf"
    assert m.text_body == "Lucky Shrub Invoice"


def test_sticker_animated() -> None:
    m = only("msg_sticker")
    assert m.sticker is not None
    assert (m.sticker.mime_type, m.sticker.animated) == ("image/webp", True)
    assert m.media is m.sticker


def test_location_business_and_bare() -> None:
    business, bare = (ev.message for ev in messages("msg_location"))
    assert business.location is not None
    assert business.location.latitude == pytest.approx(37.44211676562361)
    assert business.location.longitude == pytest.approx(-122.16155960083008)
    assert business.location.name == "Philz Coffee"
    assert business.location.address == "101 Forest Ave, Palo Alto, CA 94301"
    assert business.location.url == "https://www.philzcoffee.com/"
    assert bare.location is not None
    assert (bare.location.latitude, bare.location.longitude) == (-33.0, 151.2093)
    assert isinstance(bare.location.latitude, float)  # an int in JSON, a float here
    assert bare.location.name is None
    assert bare.location.url is None


def test_contacts_message_full_vcard() -> None:
    m = only("msg_contacts")
    assert m.type == "contacts"
    assert m.contacts is not None
    assert len(m.contacts) == 2
    card, minimal = m.contacts
    assert card.name is not None
    assert (
        card.name.formatted_name,
        card.name.first_name,
        card.name.middle_name,
        card.name.last_name,
        card.name.prefix,
        card.name.suffix,
    ) == ("Dr. Barbara J. Johnson Jr.", "Barbara", "Joana", "Johnson", "Dr.", "Jr.")
    assert card.birthday == "1999-01-23"
    assert [(p.phone, p.type, p.wa_id) for p in card.phones] == [
        ("+1 (940) 555-1234", "HOME", None),
        ("+1 (650) 555-1234", "WORK", "16505551234"),
    ]
    assert [(e.email, e.type) for e in card.emails] == [
        ("bjohnson@luckyshrub.example", "WORK"),
        ("barbara@example.com", "Personal"),
    ]
    assert [a.city for a in card.addresses] == ["Menlo Park", "Palo Alto"]
    work = card.addresses[0]
    assert (work.street, work.state, work.zip, work.country, work.country_code, work.type) == (
        "1 Hacker Way",
        "CA",
        "94025",
        "United States",
        "us",
        "WORK",
    )
    assert card.org is not None
    assert (card.org.company, card.org.department, card.org.title) == (
        "Lucky Shrub",
        "Legal",
        "Lead Counsel",
    )
    assert [(u.url, u.type) for u in card.urls] == [("https://www.luckyshrub.example", "WORK")]
    assert minimal.name is not None
    assert minimal.name.formatted_name == "Just A Name"
    assert (minimal.phones, minimal.emails, minimal.org, minimal.birthday) == ((), (), None, None)


def test_interactive_replies() -> None:
    button, row, flow, address, permission = (ev.message for ev in messages("msg_interactive"))
    assert button.interactive is not None
    assert button.interactive.type == "button_reply"
    assert button.interactive.button_reply is not None
    assert (button.interactive.button_reply.id, button.interactive.button_reply.title) == (
        "change-button",
        "Change",
    )
    assert button.interactive.reply_id == "change-button"
    assert button.context is not None
    assert button.context.from_ == "15550783881"
    assert button.context.id == "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"

    assert row.interactive is not None
    assert row.interactive.list_reply is not None
    assert row.interactive.list_reply.description == "Next Day to 2 Days"
    assert row.interactive.reply_id == "priority_express"

    assert flow.interactive is not None
    assert flow.interactive.nfm_reply is not None
    nfm = flow.interactive.nfm_reply
    assert (nfm.name, nfm.body) == ("flow", "Sent")
    assert nfm.response() == {
        "flow_token": "AQAAAAACS5FpgQ_cAAAAAD0QI3s.",
        "appointment_date": "2026-01-15",
        "guests": 2,
    }
    assert flow.interactive.reply_id is None

    assert address.interactive is not None
    assert address.interactive.nfm_reply is not None
    assert address.interactive.nfm_reply.name == "address_message"
    parsed = address.interactive.nfm_reply.response()
    assert isinstance(parsed, dict)
    assert parsed["values"]["city"] == "São Paulo"

    assert permission.interactive is not None
    reply = permission.interactive.call_permission_reply
    assert reply is not None
    assert (
        reply.response,
        reply.expiration_timestamp,
        reply.response_source,
        reply.is_permanent,
    ) == ("accept", 1750022004, "user_action", False)


def test_nfm_reply_with_broken_response_json_is_kept() -> None:
    body = (
        load("msg_interactive")
        .replace(b'"body": "Sent"', b'"body": "Sent!"')
        .replace(b'"{\\"flow_token', b'"{not json, \\"flow_token')
    )
    flow = [ev for ev in decode(body).events() if isinstance(ev, MessageEvent)][2].message
    assert flow.interactive is not None
    assert flow.interactive.nfm_reply is not None
    assert flow.interactive.nfm_reply.body == "Sent!"
    assert flow.interactive.nfm_reply.response_json is not None
    assert flow.interactive.nfm_reply.response() is None


def test_template_quick_reply_button() -> None:
    m = only("msg_button")
    assert m.button is not None
    assert (m.button.payload, m.button.text) == ("STOP_PROMOTIONS", "Stop promotions")
    assert m.text_body == "Stop promotions"
    assert m.context is not None
    assert m.context.from_ == "15550783881"


def test_reaction_set_removed_with_empty_and_with_omitted_emoji() -> None:
    added, emptied, omitted = (ev.message.reaction for ev in messages("msg_reaction"))
    assert added is not None
    assert emptied is not None
    assert omitted is not None
    target = "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI3RjlCMkQwNTRDNUY0NEE3NzgA"
    assert added.message_id == emptied.message_id == omitted.message_id == target
    assert (added.emoji, added.removed) == ("👍", False)
    assert (emptied.emoji, emptied.removed) == ("", True)
    assert (omitted.emoji, omitted.removed) == (None, True)


def test_order_prices_as_int_float_and_string() -> None:
    m = only("msg_order")
    assert m.order is not None
    assert (m.order.catalog_id, m.order.text) == ("194836987003835", "Please deliver before noon")
    items = [
        (i.product_retailer_id, i.quantity, i.item_price, i.currency) for i in m.order.product_items
    ]
    assert items == [
        ("di9ozbzfi4", 2, 30, "USD"),
        ("nqryix03ez", 1, 7.99, "USD"),
        ("sku-3", "3", "12.50", "BRL"),
    ]
    assert [type(i.item_price) for i in m.order.product_items] == [int, float, str]


def test_system_messages_current_legacy_and_bsuid() -> None:
    evs = messages("msg_system")
    assert all(ev.contact is None for ev in evs)  # system messages come without contacts
    changed, legacy, user_id, identity = (ev.message for ev in evs)
    assert changed.system is not None
    assert (changed.system.type, changed.system.wa_id) == ("user_changed_number", "16505559999")
    assert legacy.system is not None
    assert (legacy.system.type, legacy.system.new_wa_id, legacy.system.customer) == (
        "customer_changed_number",
        "16505559999",
        "16505551234",
    )
    assert user_id.system is not None
    assert (user_id.system.type, user_id.system.user_id) == (
        "user_changed_user_id",
        "US.99887766554433221100",
    )
    assert (user_id.from_, user_id.sender) == ("", "US.13491208655302741918")
    assert identity.system is not None
    assert identity.system.identity == "Sjvjlx8G6Z0="
    assert identity.identity is not None
    assert (
        identity.identity.acknowledged,
        identity.identity.created_timestamp,
        identity.identity.hash,
    ) == (True, "1749417590", "Sjvjlx8G6Z0=")


def test_unsupported_and_legacy_unknown_keep_their_errors() -> None:
    unsupported, unknown = messages("msg_unsupported")
    assert unsupported.known
    assert unknown.known
    m = unsupported.message
    assert m.unsupported is not None
    assert m.unsupported.type == "poll"
    (err,) = m.errors
    assert (err.code, err.title) == (131051, "Message type unknown")
    assert err.error_data is not None
    assert err.error_data.details == "Message type is currently not supported."
    assert err.href == "/documentation/business-messaging/whatsapp/support/error-codes"
    assert unknown.type == "unknown"
    assert [e.code for e in unknown.message.errors] == [131051]


def test_request_welcome_has_no_content() -> None:
    (ev,) = messages("msg_request_welcome")
    assert ev.type == "request_welcome"
    assert ev.known
    assert ev.message.text is None
    assert ev.message.text_body is None
    assert ev.contact is not None
    assert ev.contact.wa_id == "16505551234"


def test_edit_and_revoke() -> None:
    edit, revoke = (ev.message for ev in messages("msg_edit_revoke"))
    assert edit.edit is not None
    assert edit.edit.message is not None
    assert edit.edit.original_message_id == (
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    )
    assert edit.edit.message.type == "text"
    assert edit.edit.message.text is not None
    assert edit.edit.message.text.body == "Café at 10, not 9"
    assert revoke.revoke is not None
    assert revoke.revoke.original_message_id == (
        "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUI4NkZEMjBFNUUwRTM1RUNCQwA="
    )


def test_referral_and_referred_product() -> None:
    ad, product = (ev.message for ev in messages("msg_referral_product"))
    assert ad.referral is not None
    r = ad.referral
    assert (r.source_type, r.source_id, r.media_type, r.headline) == (
        "ad",
        "120226305854810726",
        "image",
        "Chat with us",
    )
    assert r.ctwa_clid is not None
    assert r.ctwa_clid.startswith("Aff-n8ZTODiE")
    assert r.welcome_message is not None
    assert r.welcome_message.text == "Hi! How can we help?"
    assert r.video_url is None
    assert product.context is not None
    assert product.context.referred_product is not None
    rp = product.context.referred_product
    assert (rp.catalog_id, rp.product_retailer_id) == ("194836987003835", "di9ozbzfi4")


def test_bsuid_user_with_empty_from() -> None:
    (ev,) = messages("msg_bsuid_empty_from")
    m = ev.message
    assert m.from_ == ""
    assert m.from_user_id == "US.13491208655302741918"
    assert m.from_parent_user_id == "US.00000000000000000042"
    assert m.sender == "US.13491208655302741918"
    assert ev.contact is not None
    assert (ev.contact.wa_id, ev.contact.user_id, ev.contact.parent_user_id) == (
        "",
        "US.13491208655302741918",
        "US.00000000000000000042",
    )
    assert ev.contact.profile is not None
    assert (ev.contact.profile.username, ev.contact.profile.country_code) == (
        "lia.makes.things",
        "BR",
    )


def test_group_message_and_a_type_wahook_does_not_know() -> None:
    n = decode(load("msg_group_and_new_type"))
    group, poll = (ev for ev in n.events() if isinstance(ev, MessageEvent))
    assert group.message.group_id == "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
    # contacts are matched on wa_id, not by position
    assert group.contact is not None
    assert group.contact.name == "Bo"
    assert poll.contact is not None
    assert poll.contact.name == "Ana"
    assert (poll.type, poll.known) == ("poll", False)
    assert json.loads(poll.raw)["poll"]["options"][1] == {"id": 2, "name": "Sushi"}
    assert n.unknown() == {"message:poll": 1}


def test_message_echoes_are_change_events_holding_messages() -> None:
    evs = events("field_smb")
    echoes = [ev for ev in evs if isinstance(ev, ChangeEvent) and ev.key == "message_echoes"]
    assert len(echoes) == 2
    first, second = (ev.value for ev in echoes)
    assert isinstance(first, Message)
    assert isinstance(second, Message)
    assert (first.from_, first.to, first.type) == ("15550783881", "16505551234", "text")
    assert first.text is not None
    assert first.text.body == "Sent from the Business app"
    assert second.type == "revoke"
    assert second.revoke is not None
    assert echoes[0].type == "smb_message_echoes.message_echoes"
