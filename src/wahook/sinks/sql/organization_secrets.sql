SELECT id, name, whatsapp_business_account_id, whatsapp_phone_number_id,
       whatsapp_webhook_verify_token, whatsapp_app_secret
FROM organizations
WHERE is_active
ORDER BY id
