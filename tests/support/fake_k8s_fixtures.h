/*
 * fake_k8s_fixtures.h - bodies from ../shared/fixtures (k8s-*.json), compact,
 * key order kept, for the fake API server (fake_k8s.c). Generated from the
 * fixture files with a small Python one-off; the unit test compares what the
 * fake serves with the fixture files themselves (test_k8s.c, fixture_*).
 */
#ifndef CT_FAKE_K8S_FIXTURES_H
#define CT_FAKE_K8S_FIXTURES_H

/* k8s-secret-list.json items[0], items[1]; k8s-secret-list-last-page.json items[0] */
static const char *const fk_fixture_secrets[] = {
    "{\"metadata\":{\"name\":\"api-tls\",\"namespace\":\"payments\",\"uid\":\"a1c3e5f7-9b2d-4f6a-8"
    "c0e-2d4f6a8c0e1f\",\"resourceVersion\":\"183902\",\"creationTimestamp\":\"2026-02-18T08:"
    "41:55Z\",\"managedFields\":[{\"manager\":\"kubectl-create\",\"operation\":\"Update\",\"apiVe"
    "rsion\":\"v1\",\"time\":\"2026-02-18T08:41:55Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f"
    ":data\":{\".\":{},\"f:tls.crt\":{},\"f:tls.key\":{}},\"f:type\":{}}}]},\"data\":{\"tls.crt\":"
    "\"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJFWEFNUExFCi0tLS0tRU5EIENFUlRJRklDQVR"
    "FLS0tLS0K\",\"tls.key\":\"LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUJFWEFNUExFCi0tLS"
    "0tRU5EIFBSSVZBVEUgS0VZLS0tLS0K\"},\"type\":\"kubernetes.io/tls\"}",
    "{\"metadata\":{\"name\":\"db-credentials\",\"namespace\":\"payments\",\"uid\":\"b8e4d2f0-6a1c"
    "-4e3b-9d5f-7c9e1a3b5d7f\",\"resourceVersion\":\"184377\",\"creationTimestamp\":\"2026-02"
    "-20T11:05:09Z\",\"labels\":{\"app.kubernetes.io/name\":\"payments-api\"},\"managedFields"
    "\":[{\"manager\":\"kubectl-create\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":\"20"
    "26-02-20T11:05:09Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:data\":{\".\":{},\"f:host"
    "\":{},\"f:password\":{},\"f:username\":{}},\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app.ku"
    "bernetes.io/name\":{}}},\"f:type\":{}}}]},\"data\":{\"host\":\"cG9zdGdyZXMucGF5bWVudHMuc"
    "3ZjOjU0MzI=\",\"password\":\"UzNjcjN0LUV4YW1wbGUtT25seQ==\",\"username\":\"YXBwX3VzZXI=\""
    "},\"type\":\"Opaque\"}",
    "{\"metadata\":{\"name\":\"webhook-token\",\"namespace\":\"payments\",\"uid\":\"c9d1e3f5-a7b9-"
    "4c1d-8e2f-4a6b8c0d2e4f\",\"resourceVersion\":\"184101\",\"creationTimestamp\":\"2026-02-"
    "21T14:30:12Z\",\"managedFields\":[{\"manager\":\"kubectl-create\",\"operation\":\"Update\","
    "\"apiVersion\":\"v1\",\"time\":\"2026-02-21T14:30:12Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV"
    "1\":{\"f:data\":{\".\":{},\"f:token\":{}},\"f:type\":{}}}]},\"data\":{\"token\":\"d2hzZWNfZXhh"
    "bXBsZV9vbmx5\"},\"type\":\"Opaque\"}",
    NULL,
};

/* The list resourceVersion of both list fixtures. */
#define FK_FIXTURE_LIST_RV 184532

/* k8s-namespace-kube-system.json (metadata.uid is replaced by the configured one) */
static const char fk_fixture_namespace[] =
    "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"kube-system\",\"uid\":\"6f"
    "2b8c3a-1d4e-4f5a-9b7c-8e0d1a2b3c4d\",\"resourceVersion\":\"4\",\"creationTimestamp\":\"2"
    "025-11-03T09:14:27Z\",\"labels\":{\"kubernetes.io/metadata.name\":\"kube-system\"},\"man"
    "agedFields\":[{\"manager\":\"kube-apiserver\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
    "\"time\":\"2025-11-03T09:14:27Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{"
    "\"f:labels\":{\".\":{},\"f:kubernetes.io/metadata.name\":{}}}}}]},\"spec\":{\"finalizers\""
    ":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}";

/* k8s-jwks.json */
static const char fk_fixture_jwks[] =
    "{\"keys\":[{\"use\":\"sig\",\"kty\":\"RSA\",\"kid\":\"dKbZue6Fd-LfHhodbTb4iQcXQt_PFx29stWe2Tu"
    "CMHE\",\"alg\":\"RS256\",\"n\":\"z2bQPvFaxQABCE4fZWZqkdyadBrioUB_KODZwZrhpkmS_xGX6yrb2N-"
    "NQ56BKc4S05dsfOGTMDsliHAD8Rh5cT6fFaXxwNI1_-HMYajDHhKXm8yY46_QVwHhiZScNNC7OELNLMZ"
    "r3nYPcR4snGiDEmMQZiPHsmJRCn05znvepr2-cxhORSsMgUF5nnMXfSij0iYcLSTucsaOwb3G8GGyX1Y"
    "FGBzNaxNjs14h72F1cvFzgbbSa7k8652YnypXx_GLbr4acqLwhRZ8cjeTh0VNUi1rIo1DFxqstVZ3mFi"
    "sOBRmJkfKD5xyQOsHl-mZhOhIUK5mJloR0QE5fcU4vFUaFw\",\"e\":\"AQAB\"}]}";

/* k8s-tokenreview-request.json spec.token: the sample projected token */
static const char fk_fixture_sa_token[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImRLYlp1ZTZGZC1MZkhob2RiVGI0aVFjWFF0X1BGeDI5c3RXZTJU"
    "dUNNSEUifQ.eyJhdWQiOlsiaHR0cHM6Ly9rdWJlcm5ldGVzLmRlZmF1bHQuc3ZjLmNsdXN0ZXIubG9jY"
    "WwiXSwiZXhwIjoxNzk4NzYxNjAwLCJpYXQiOjE3NjcyMjU2MDAsImlzcyI6Imh0dHBzOi8va3ViZXJuZ"
    "XRlcy5kZWZhdWx0LnN2Yy5jbHVzdGVyLmxvY2FsIiwianRpIjoiNGYwYzJkOWUtOGE2MS00YjdlLTlkM"
    "GEtMmM1ZTdmMWIzYTkwIiwia3ViZXJuZXRlcy5pbyI6eyJuYW1lc3BhY2UiOiJwYXltZW50cyIsIm5vZ"
    "GUiOnsibmFtZSI6Indvcmtlci0yIiwidWlkIjoiOWIyZDZjMWUtM2Y0YS00ZThiLWE3ZDUtMGMxZTJmM"
    "2E0YjVjIn0sInBvZCI6eyJuYW1lIjoicGF5bWVudHMtYXBpLTdjOWY4ZDZiNS14Mms0cSIsInVpZCI6I"
    "jBlN2E0YzFiLTVkMmYtNGE5ZS04YjNjLTZmMWQyZTNhNGI1YyJ9LCJzZXJ2aWNlYWNjb3VudCI6eyJuY"
    "W1lIjoicGF5bWVudHMtYXBpIiwidWlkIjoiM2MxZTVhN2ItMmQ0Zi00YzZlLTlhOGItMWYwZTJkM2M0Y"
    "jVhIn0sIndhcm5hZnRlciI6MTc2NzIyOTIwN30sIm5iZiI6MTc2NzIyNTYwMCwic3ViIjoic3lzdGVtO"
    "nNlcnZpY2VhY2NvdW50OnBheW1lbnRzOnBheW1lbnRzLWFwaSJ9.GoLWnNDtorkXiggMSQCGa1Jn1x9-"
    "P9h2L5MP8ofn5jd75_isw2CQ6gXN2bMfff9CXXEBIa7UbaFrjTnVQEjrnK-9c64gWsFel2gCWBvmCQHO"
    "gYOVyqqRx7427bePAbUpjimg-cImbM21olLWS1uYfdrwKr4LiT-Ft7lVD9H3T8VYjrHDN_WmCqekLjGw"
    "xSK5GupidLjSqyRObXuSQ_cndyeyZV-uR7W7-UddzO06tc9tj_VCUEx4a5faVF9kFHsXCwwPhH4M3LAd"
    "nYFbW4BS7XhP3ooAwWX056Vs-clLAR39a9iZfgzL5OT6kVEQFCVgQ7JOpRlulvN3_v_85CW0qA";

/* k8s-tokenreview-response.json status.user */
static const char fk_fixture_review_user[] =
    "{\"username\":\"system:serviceaccount:payments:payments-api\",\"uid\":\"3c1e5a7b-2d4f-4"
    "c6e-9a8b-1f0e2d3c4b5a\",\"groups\":[\"system:serviceaccounts\",\"system:serviceaccount"
    "s:payments\",\"system:authenticated\"],\"extra\":{\"authentication.kubernetes.io/crede"
    "ntial-id\":[\"JTI=4f0c2d9e-8a61-4b7e-9d0a-2c5e7f1b3a90\"],\"authentication.kubernete"
    "s.io/node-name\":[\"worker-2\"],\"authentication.kubernetes.io/node-uid\":[\"9b2d6c1e-"
    "3f4a-4e8b-a7d5-0c1e2f3a4b5c\"],\"authentication.kubernetes.io/pod-name\":[\"payments"
    "-api-7c9f8d6b5-x2k4q\"],\"authentication.kubernetes.io/pod-uid\":[\"0e7a4c1b-5d2f-4a"
    "9e-8b3c-6f1d2e3a4b5c\"]}}";

#endif
