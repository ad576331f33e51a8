package sink

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// appendNumeric appends the binary COPY field (length prefix included) of
// Postgres numeric for a JSON number literal, exactly: the digits that were
// sent, their scale kept (10.50 stays 10.50). It spares the big.Int that
// pgx's numeric codec builds per value.
//
// Wire format: int16 ndigits, int16 weight (of the first base-10000 digit),
// uint16 sign, int16 dscale (digits after the decimal point), then ndigits
// int16 base-10000 digits, the first non-zero.
func appendNumeric(buf []byte, lit string) ([]byte, error) {
	s := lit
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	exp := 0
	for i := 0; i < len(s); i++ {
		if s[i] == 'e' || s[i] == 'E' {
			e, err := strconv.Atoi(s[i+1:])
			if err != nil || e > 1<<20 || e < -(1<<20) {
				return nil, fmt.Errorf("numeric literal %q: bad exponent", lit)
			}
			exp, s = e, s[:i]
			break
		}
	}
	// Digits without the point; point is where the decimal point falls in
	// them once the exponent is applied.
	var digits [64]byte
	ds := digits[:0]
	point, frac, seenPoint := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !seenPoint:
			seenPoint = true
		case c >= '0' && c <= '9':
			ds = append(ds, c-'0')
			if seenPoint {
				frac++
			}
		default:
			return nil, fmt.Errorf("%q is not a number", lit)
		}
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("%q is not a number", lit)
	}
	point = len(ds) - frac + exp
	dscale := frac - exp
	if dscale < 0 {
		dscale = 0
	}
	if dscale > 0x3FFF {
		return nil, fmt.Errorf("numeric literal %q: more than 16383 digits after the point", lit)
	}
	for len(ds) > 0 && ds[0] == 0 { // leading zeros
		ds = ds[1:]
		point--
	}
	for len(ds) > 0 && ds[len(ds)-1] == 0 { // trailing zeros (dscale keeps them)
		ds = ds[:len(ds)-1]
	}
	var header [8]byte
	if len(ds) == 0 { // zero
		binary.BigEndian.PutUint16(header[6:], uint16(dscale))
		buf = binary.BigEndian.AppendUint32(buf, 8)
		return append(buf, header[:]...), nil
	}
	// Align groups of four digits on the decimal point.
	pad := ((point % 4) + 4) % 4
	if pad != 0 {
		pad = 4 - pad
	}
	aligned := point + pad // a multiple of 4
	weight := aligned/4 - 1
	n := (pad + len(ds) + 3) / 4
	if weight > 0x7FFF || weight < -0x8000 || n > 0x7FFF {
		return nil, fmt.Errorf("numeric literal %q is out of Postgres's numeric range", lit)
	}
	buf = binary.BigEndian.AppendUint32(buf, uint32(8+2*n))
	buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	buf = binary.BigEndian.AppendUint16(buf, uint16(int16(weight)))
	sign := uint16(0)
	if neg {
		sign = 0x4000
	}
	buf = binary.BigEndian.AppendUint16(buf, sign)
	buf = binary.BigEndian.AppendUint16(buf, uint16(dscale))
	// Digit i of the padded sequence is ds[i-pad] (zero outside).
	for g := 0; g < n; g++ {
		v := 0
		for k := 0; k < 4; k++ {
			i := g*4 + k - pad
			v *= 10
			if i >= 0 && i < len(ds) {
				v += int(ds[i])
			}
		}
		buf = binary.BigEndian.AppendUint16(buf, uint16(v))
	}
	return buf, nil
}
