package main

// The generated code in ordersv1 is committed. To make it again, with
// protoc 3.21 or later (Debian: apt-get install protobuf-compiler) and the
// Go plugins on PATH:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	go generate ./examples/ordersgrpc

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative ordersv1/orders.proto
