package snapshot

// HandedOn says whether the snapshot carries its file list in memory for
// the next Ensure (tests check it is handed on, and dropped).
func HandedOn(in *Info) bool { return in.files != nil }
