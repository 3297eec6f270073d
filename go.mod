module github.com/ril3y/gomlx

go 1.23
