package sms

import "unicode/utf16"

// gsm7 is the GSM 03.38 default alphabet; gsm7Ext the characters of its
// extension table, which take two septets (an escape and the character).
const (
	gsm7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
		"¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	gsm7Ext = "^{}\\[~]|€\f"
)

var (
	gsm7Set    = runeSet(gsm7)
	gsm7ExtSet = runeSet(gsm7Ext)
)

func runeSet(s string) map[rune]bool {
	m := map[rune]bool{}
	for _, r := range s {
		m[r] = true
	}
	return m
}

// Segments is how many SMS segments text takes, as carriers and Twilio
// count them: GSM-7 when every character is in the GSM 03.38 alphabet (160
// septets in one segment, 153 per segment when split; extension characters
// such as € take two), else UCS-2 (70 UTF-16 units, 67 per segment when
// split). German text with „quotes“ or – dashes is UCS-2.
func Segments(text string) (n int, encoding string) {
	septets, gsm := 0, true
	for _, r := range text {
		switch {
		case gsm7Set[r]:
			septets++
		case gsm7ExtSet[r]:
			septets += 2
		default:
			gsm = false
		}
	}
	if gsm {
		return split(septets, 160, 153), "GSM-7"
	}
	return split(len(utf16.Encode([]rune(text))), 70, 67), "UCS-2"
}

func split(units, single, part int) int {
	if units <= single {
		return 1
	}
	return (units + part - 1) / part
}
