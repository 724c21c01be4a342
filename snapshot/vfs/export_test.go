package vfs

// For the tests of package vfs_test, which unpack through package bundle.
type CopyOptions = copyOptions

var CopyTree = copyTree
