#!/bin/sh
# Make a throw-away test CA, a broker certificate and client certificates with openssl.
#
#   deploy/mosquitto/make-test-ca.sh OUT_DIR [CLIENT_CN ...]
#
# OUT_DIR gets ca.crt/ca.key, server.crt/server.key (valid for localhost, 127.0.0.1, ::1 and
# the names in $SERVER_NAMES, space-separated) and <CN>.crt/<CN>.key for every client CN
# (default: "site-demo" and "grid"). With `use_identity_as_username true` the broker takes
# the CN as the user name, so a site's certificate CN must be its site id (see acl).
# For tests and labs only: keys are unencrypted, certificates valid for $DAYS days (default 30).
set -eu

out=${1:?usage: make-test-ca.sh OUT_DIR [CLIENT_CN ...]}
shift
[ $# -gt 0 ] || set -- site-demo grid
days=${DAYS:-30}
command -v openssl >/dev/null 2>&1 || { echo "make-test-ca.sh: openssl not found" >&2; exit 2; }
mkdir -p "$out"
cd "$out"

key() { openssl ecparam -name prime256v1 -genkey -noout -out "$1" 2>/dev/null; chmod 600 "$1"; }

key ca.key
openssl req -x509 -new -key ca.key -sha256 -days "$days" -subj "/O=youxu test/CN=youxu test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.crt 2>/dev/null

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in ${SERVER_NAMES:-}; do san="$san,DNS:$name"; done

sign() {  # sign CN EXTFILE
    openssl req -new -key "$1.key" -subj "/O=youxu test/CN=$1" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" -sha256 \
        -extfile "$2" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$2"
}

key server.key
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' "$san" > server.ext
sign server server.ext

for cn in "$@"; do
    key "$cn.key"
    printf 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n' > "$cn.ext"
    sign "$cn" "$cn.ext"
done
rm -f ca.srl
echo "make-test-ca.sh: CA, server and $# client certificate(s) in $out"
