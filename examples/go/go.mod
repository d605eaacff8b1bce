module github.com/wire/examples/go

go 1.19
