"""Statuses (§4), value-level errors (§5) and every other webhook field (§6), decoded."""

from __future__ import annotations

import json

from tests.fixtures import load
from wahook.parse import ChangeEvent, Event, StatusEvent, decode
from wahook.parse import models as m

WABA = "102290129340398"


def events(name: str) -> list[Event]:
    n = decode(load(name))
    assert n.problems == []
    return list(n.events())


def statuses(name: str) -> list[StatusEvent]:
    evs = events(name)
    assert all(isinstance(ev, StatusEvent) for ev in evs)
    return [ev for ev in evs if isinstance(ev, StatusEvent)]


def changes(name: str) -> list[ChangeEvent]:
    evs = events(name)
    assert all(isinstance(ev, ChangeEvent) for ev in evs)
    return [ev for ev in evs if isinstance(ev, ChangeEvent)]


# --- statuses ------------------------------------------------------------------------


def test_sent_with_conversation_cbp_pricing_and_callback_data() -> None:
    (ev,) = statuses("status_sent_pricing")
    s = ev.status
    assert (ev.kind, ev.type, ev.known) == ("status", "sent", True)
    assert ev.wamid == s.id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3OEZDMTVCNEQ2RTBGRkJBRjkA"
    assert ev.timestamp == 1749416383
    assert s.recipient_id == "16505551234"
    assert s.biz_opaque_callback_data == "campaign=42;audience=7"
    assert s.conversation == m.Conversation(
        id="0ba4d56eb6bb2a52f9bc9d7e8d5b7b1e",
        expiration_timestamp="1749502783",
        origin=m.Origin(type="marketing"),
    )
    assert s.pricing == m.Pricing(billable=True, pricing_model="CBP", category="marketing")
    assert s.errors == ()
    assert ev.contact is None
    assert ev.path == "entry[0].changes[0].value.statuses[0]"
    assert json.loads(ev.raw)["pricing"]["pricing_model"] == "CBP"


def test_delivered_read_played_and_pmp_pricing() -> None:
    delivered, read, played, free = statuses("status_delivered_read_played")
    assert [ev.type for ev in (delivered, read, played, free)] == [
        "delivered",
        "read",
        "played",
        "sent",
    ]
    assert delivered.status.pricing == m.Pricing(
        billable=True, pricing_model="PMP", type="regular", category="authentication-international"
    )
    assert delivered.status.conversation is None
    assert (read.status.pricing, read.timestamp) == (None, 1749416400)
    assert played.known
    assert played.wamid == "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJWT0lDRTAwMDAwMDAwMDAwMDEA"
    assert free.status.pricing is not None
    assert free.status.pricing.billable is False
    assert free.status.pricing.type == "free_entry_point"
    assert free.status.conversation is not None
    assert free.status.conversation.origin == m.Origin(type="referral_conversion")
    assert [ev.path for ev in (delivered, free)] == [
        "entry[0].changes[0].value.statuses[0]",
        "entry[0].changes[0].value.statuses[3]",
    ]


def test_failed_with_errors() -> None:
    (ev,) = statuses("status_failed")
    assert ev.type == "failed"
    (err,) = ev.status.errors
    assert err.code == 131049
    assert err.title == err.message
    assert err.error_data is not None
    assert err.error_data.details is not None
    assert err.error_data.details.startswith("In order")
    assert (
        err.href == "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
    )


def test_group_statuses_with_participant_and_string_error_code() -> None:
    read, failed = statuses("status_group")
    assert read.status.recipient_type == "group"
    assert read.status.recipient_id == "Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD"
    assert read.status.recipient_participant_id == "5511987654321"
    assert read.status.recipient_participant_user_id == "BR.55667788990011223344"
    assert read.status.recipient_participant_parent_user_id == "BR.00000000000000000001"
    assert [e.code for e in failed.status.errors] == ["ERROR_CODE"]


def test_bsuid_status_matches_its_contact_on_user_id() -> None:
    (ev,) = statuses("status_bsuid")
    s = ev.status
    assert (s.recipient_id, s.recipient_user_id, s.recipient_parent_user_id) == (
        "",
        "US.13491208655302741918",
        "US.00000000000000000042",
    )
    assert s.recipient_identity_key_hash == "Ym9ndXNoYXNo"
    assert ev.contact is not None
    assert ev.contact.user_id == "US.13491208655302741918"
    assert ev.contact.profile is not None
    assert ev.contact.profile.username == "lia.makes.things"


def test_unknown_status_value_is_kept_and_counted() -> None:
    n = decode(load("status_unknown_value"))
    (ev,) = n.events()
    assert isinstance(ev, StatusEvent)
    assert (ev.type, ev.known) == ("deleted", False)
    assert ev.status.timestamp == 1749416900
    assert ev.timestamp == 1749416900
    assert n.unknown() == {"status:deleted": 1}


def test_fifty_statuses_in_one_post() -> None:
    evs = statuses("statuses_50")
    assert len(evs) == 50
    assert len({ev.wamid for ev in evs}) == 50
    assert [ev.path for ev in evs][-1] == "entry[0].changes[0].value.statuses[49]"
    assert [ev.type for ev in evs[:4]] == ["sent", "delivered", "read", "sent"]
    assert all(ev.status.conversation is not None for ev in evs)


# --- value-level errors --------------------------------------------------------------


def test_value_level_errors_are_change_events() -> None:
    rate, unsupported = changes("value_errors")
    assert (rate.field, rate.key, rate.type, rate.known) == (
        "messages",
        "errors",
        "messages.errors",
        True,
    )
    assert rate.phone_number_id == "106540352242922"
    assert isinstance(rate.value, m.Error)
    assert rate.value.code == 130429
    assert rate.value.title == "Rate limit hit"
    assert isinstance(unsupported.value, m.Error)
    assert unsupported.value.code == 131000
    assert unsupported.path == "entry[0].changes[0].value.errors[1]"


# --- the other fields ----------------------------------------------------------------


def test_template_status_updates_with_big_ids_null_reason_and_entry_time() -> None:
    approved, deletion, paused = changes("field_template_status")
    assert all(
        ev.field == "message_template_status_update" and ev.known
        for ev in (approved, deletion, paused)
    )
    assert approved.value == m.TemplateStatusUpdate(
        event="APPROVED",
        message_template_id=1689556908129832,
        message_template_name="order_confirmation",
        message_template_language="en_US",
        reason="NONE",
        message_template_category="UTILITY",
    )
    assert (approved.entry_time, approved.waba_id, approved.key) == (1749500000, WABA, None)
    assert approved.path == "entry[0].changes[0].value"
    assert json.loads(approved.raw)["event"] == "APPROVED"
    assert isinstance(deletion.value, m.TemplateStatusUpdate)
    assert (deletion.value.event, deletion.value.reason) == ("PENDING_DELETION", None)
    # keys wahook does not type stay in the raw value
    assert json.loads(paused.raw)["other_info"]["title"] == "FIRST_PAUSE"


def test_template_quality_and_components() -> None:
    quality, components = changes("field_template_quality_components")
    assert quality.value == m.TemplateQualityUpdate(
        previous_quality_score="GREEN",
        new_quality_score="YELLOW",
        message_template_id=806312974732579,
        message_template_name="welcome_template",
        message_template_language="en-US",
    )
    c = components.value
    assert isinstance(c, m.TemplateComponentsUpdate)
    assert c.message_template_element == "Hi {{1}}, welcome to Lucky Shrub!"
    assert (c.message_template_title, c.message_template_footer) == ("Welcome", "Lucky Shrub")
    assert [b.message_template_button_type for b in c.message_template_buttons] == [
        "URL",
        "PHONE_NUMBER",
        "QUICK_REPLY",
    ]
    assert c.message_template_buttons[1].message_template_button_phone_number == "+15550783881"


def test_template_category_completed_and_impending() -> None:
    done, impending = changes("field_template_category")
    assert isinstance(done.value, m.TemplateCategoryUpdate)
    assert (done.value.previous_category, done.value.new_category) == ("UTILITY", "MARKETING")
    assert done.value.correct_category is None
    assert isinstance(impending.value, m.TemplateCategoryUpdate)
    assert impending.value.correct_category == "MARKETING"
    assert impending.value.category_update_timestamp == 1749588500


def test_phone_number_quality_and_name() -> None:
    quality, name = changes("field_phone_number")
    assert quality.value == m.PhoneNumberQualityUpdate(
        display_phone_number="15550783881",
        event="THROUGHPUT_UPGRADE",
        current_limit="TIER_10K",
        old_limit="TIER_2K",
        max_daily_conversations_per_business="TIER_10K",
    )
    assert isinstance(name.value, m.PhoneNumberNameUpdate)
    assert (name.value.decision, name.value.requested_verified_name) == (
        "REJECTED",
        "Lucky Shrub Café",
    )
    assert name.value.rejection_reason == "NAME_FORMAT_UNACCEPTABLE"


def test_account_fields() -> None:
    evs = changes("field_account")
    assert [ev.field for ev in evs] == [
        *["account_update"] * 5,
        "account_review_update",
        "account_alerts",
        "business_capability_update",
        "business_capability_update",
        "security",
    ]
    updates = [ev.value for ev in evs[:5]]
    assert all(isinstance(u, m.AccountUpdate) for u in updates)
    assert [u.event for u in updates if isinstance(u, m.AccountUpdate)] == [
        "ACCOUNT_VIOLATION",
        "ACCOUNT_RESTRICTION",
        "DISABLED_UPDATE",
        "PARTNER_ADDED",
        "BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE",
    ]
    assert updates[4] == m.AccountUpdate(
        event="BUSINESS_PRIMARY_LOCATION_COUNTRY_UPDATE", country="BR"
    )
    # shapes wahook does not type are in raw, e.g. the ban date written as prose
    assert json.loads(evs[2].raw)["ban_info"]["waba_ban_date"] == "April 17, 2025"
    assert evs[5].value == m.AccountReviewUpdate(decision="APPROVED")
    alerts = evs[6].value
    assert isinstance(alerts, m.AccountAlerts)
    assert alerts.alert_info is not None
    assert (alerts.entity_type, alerts.entity_id) == ("PHONE_NUMBER", "106540352242922")
    assert alerts.alert_info.alert_severity == "WARNING"
    assert alerts.alert_info.alert_type == "INCREASED_CAPABILITIES_ELIGIBILITY_NEED_MORE_INFO"
    as_int, as_tier = evs[7].value, evs[8].value
    assert as_int == m.BusinessCapabilityUpdate(
        max_daily_conversation_per_phone=-1,
        max_daily_conversations_per_business=2000,
        max_phone_numbers_per_business=25,
    )
    assert isinstance(as_tier, m.BusinessCapabilityUpdate)
    assert as_tier.max_daily_conversations_per_business == "TIER_UNLIMITED"
    assert evs[9].value == m.Security(
        display_phone_number="15550783881", event="PIN_RESET_REQUEST", requester="2729063490586005"
    )
    assert [ev.entry_time for ev in evs] == [1749504000] * 5 + [1749504100] * 5


def test_flows() -> None:
    status, rate = changes("field_flows")
    assert isinstance(status.value, m.Flows)
    assert (status.value.event, status.value.old_status, status.value.new_status) == (
        "FLOW_STATUS_CHANGE",
        "DRAFT",
        "PUBLISHED",
    )
    assert isinstance(rate.value, m.Flows)
    assert (rate.value.error_rate, rate.value.threshold, rate.value.alert_state) == (
        10.5,
        10,
        "ACTIVATED",
    )
    assert json.loads(rate.raw)["errors"][0]["error_type"] == "TIMEOUT_ERROR"


def test_user_preferences_items() -> None:
    stop, resume = changes("field_user_preferences")
    assert (stop.field, stop.key, stop.phone_number_id) == (
        "user_preferences",
        "user_preferences",
        "106540352242922",
    )
    assert stop.value == m.UserPreference(
        wa_id="16505551234",
        detail="User requested to stop marketing messages",
        category="marketing_messages",
        value="stop",
        timestamp=1749506000,
    )
    assert isinstance(resume.value, m.UserPreference)
    assert (resume.value.value, resume.value.user_id) == ("resume", "US.13491208655302741918")


def test_smb_app_state_sync() -> None:
    evs = [ev for ev in changes("field_smb") if ev.key == "state_sync"]
    assert [ev.field for ev in evs] == ["smb_app_state_sync"] * 2
    add, remove = (ev.value for ev in evs)
    assert isinstance(add, m.StateSync)
    assert isinstance(remove, m.StateSync)
    assert (add.type, add.action) == ("contact", "add")
    assert add.contact == m.StateSyncContact(
        full_name="Barbara Johnson", first_name="Barbara", phone_number="16505551234"
    )
    assert remove.action == "remove"
    assert evs[1].path == "entry[1].changes[0].value.state_sync[1]"


def test_history_chunk_and_declined_history() -> None:
    chunk, declined = changes("field_history")
    assert (chunk.field, chunk.key) == ("history", "history")
    assert isinstance(chunk.value, m.HistoryItem)
    assert chunk.value.metadata is not None
    assert (
        chunk.value.metadata.phase,
        chunk.value.metadata.chunk_order,
        chunk.value.metadata.progress,
    ) == (0, 1, 55)
    thread = json.loads(chunk.raw)["threads"][0]
    assert [msg["type"] for msg in thread["messages"]] == ["text", "media_placeholder"]
    assert isinstance(declined.value, m.HistoryItem)
    assert [e.code for e in declined.value.errors] == [2593109]
    assert declined.path == "entry[1].changes[0].value.history[0]"


def test_calls_connect_terminate_and_call_statuses() -> None:
    evs = events("field_calls")
    connect, terminate = (ev for ev in evs if isinstance(ev, ChangeEvent))
    ringing, accepted = (ev for ev in evs if isinstance(ev, StatusEvent))
    assert isinstance(connect.value, m.Call)
    assert isinstance(terminate.value, m.Call)
    assert (connect.key, connect.value.event, connect.value.direction) == (
        "calls",
        "connect",
        "USER_INITIATED",
    )
    assert connect.value.from_ == "16505551234"
    assert connect.value.session is not None
    assert connect.value.session.sdp_type == "offer"
    assert connect.value.session.sdp is not None
    assert connect.value.session.sdp.startswith("v=0\r\n")
    t = terminate.value
    assert (t.event, t.status, t.start_time, t.end_time, t.duration) == (
        "terminate",
        "FAILED",
        "1749508005",
        "1749508120",
        115,
    )
    assert t.biz_opaque_callback_data == "ticket-991"
    assert [(e.code, e.title) for e in t.errors] == [(138021, None)]  # title omitted
    assert (ringing.field, ringing.type, ringing.status.type) == ("calls", "RINGING", "call")
    assert accepted.type == "ACCEPTED"
    assert ringing.known
    assert accepted.known


def test_group_fields() -> None:
    created, added = changes("field_groups")
    assert (created.field, created.key) == ("group_lifecycle_update", "groups")
    assert created.value == m.Group(
        group_id="Y2FwaV9ncm91cDoxNzA1NTU1MDEzOToxMjAzNjM0MDQ2OTQyMzM4MjAZD",
        type="group_create",
        timestamp="1749509000",
        request_id="6f1c2d7e-req-1",
        subject="Lucky Shrub VIPs",
    )
    assert json.loads(created.raw)["invite_link"] == "https://chat.whatsapp.com/ABCDEFGHIJK"
    assert added.field == "group_participants_update"
    assert isinstance(added.value, m.Group)
    assert added.value.errors[0].code == "ERROR_CODE"


def test_partner_solutions_payment_and_unknown_fields() -> None:
    n = decode(load("field_partner_payment_unknown"))
    assert n.problems == []
    partner, payment, automatic, future = n.events()
    assert isinstance(partner, ChangeEvent)
    assert isinstance(future, ChangeEvent)
    assert partner.waba_id == "2729063490586005"  # a business portfolio id here
    assert partner.value == m.PartnerSolutions(
        event="SOLUTION_CREATED", solution_id="1102373551133713", solution_status="INITIATED"
    )
    assert isinstance(payment, ChangeEvent)
    assert payment.value == m.PaymentConfigurationUpdate(
        configuration_name="razorpay-main",
        provider_name="razorpay",
        provider_mid="acc_Hxyz123",
        status="Active",
        created_timestamp=1749410100,
        updated_timestamp=1749510100,
    )
    assert isinstance(automatic, ChangeEvent)
    assert (automatic.field, automatic.value, automatic.known) == ("automatic_events", None, True)
    assert json.loads(automatic.raw) == {"event": "SOMETHING_NEW", "detail": {"nested": [1, 2, 3]}}
    assert (future.field, future.value, future.known, future.type) == (
        "some_future_field",
        None,
        False,
        "some_future_field",
    )
    assert json.loads(future.raw) == {"brand_new": True, "ids": [1, 2]}
    assert future.path == "entry[1].changes[2].value"
    assert n.unknown() == {"change:some_future_field": 1}
