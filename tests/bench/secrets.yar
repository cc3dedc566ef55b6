// What linux.secrets looks for, as YARA rules, so that Volatility 3's linux.vmayarascan (it has no secrets scan) can
// be timed on the same work in tests/bench/vol-compare.sh. The regular expressions match the same things; linux.secrets
// also validates them (PEM end line, base64 of the AWS secret, JWT header JSON, SAS signature length), which YARA does not.
rule pem_private_key { strings: $a = /-----BEGIN [A-Z ]{0,24}PRIVATE KEY-----/ condition: $a }
rule aws_access_key_id { strings: $a = /(AKIA|ASIA)[A-Z0-9]{16}/ condition: $a }
rule jwt { strings: $a = /eyJ[A-Za-z0-9_-]{4,512}\.[A-Za-z0-9_-]{4,2048}\.[A-Za-z0-9_-]{4,512}/ condition: $a }
rule azure_sas_token { strings: $a = /[?&]sig=[A-Za-z0-9%+\/=]{40,100}/ condition: $a }
rule azure_connection_string { strings: $a = /(AccountKey=[A-Za-z0-9+\/=]{86,88}|SharedAccessKey=[A-Za-z0-9+\/=]{43,44})/ condition: $a }
