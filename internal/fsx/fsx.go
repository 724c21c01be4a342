// Package fsx holds the file system helpers the snapshot, layer and driver
// packages share: files written under a private temporary name and put in
// place by rename, directory sync, extended attributes, raw directory
// reads, one parallel tree walk with first-error handling, and a tree
// whose every name resolves inside its root.
//
// It knows nothing of images, layers or stores, and looks at nothing of
// the process but its umask.
package fsx
