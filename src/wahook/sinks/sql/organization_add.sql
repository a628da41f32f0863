INSERT INTO organizations (name, whatsapp_business_account_id, whatsapp_phone_number_id,
                           whatsapp_access_token, whatsapp_webhook_verify_token,
                           whatsapp_app_secret)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id
