SELECT id, whatsapp_business_account_id, whatsapp_phone_number_id
FROM organizations
ORDER BY id
