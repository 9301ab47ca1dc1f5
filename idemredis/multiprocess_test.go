package idemredis_test
const childEnv = "IDEMREDIS_CHILD"
func child() {}
