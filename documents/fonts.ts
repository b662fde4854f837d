import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { create, type Font } from 'fontkit';

/**
 * The TrueType fonts embedded (subset) in every document: DejaVu Sans, vendored with its license, parsed (fontkit, as
 * PDFKit parses them). Parsing is most of a render's cost (the tables of 1.4 MB of fonts, and the garbage they leave),
 * so it is done once per process or render thread and every document subsets the same parsed fonts: a parsed font is
 * only read by the layout and subsetting of a document (its glyph caches fill once), so documents cannot see each other.
 * The subsetting itself is patched (patches/fontkit+2.0.4.patch, patches/restructure+3.0.2.patch): a simple glyph's
 * record is copied without decoding its outline, and restructure names its stream methods and sizes its numbers once,
 * not per number; a render costs about half as much and its bytes are the same (test/unit/invoice-pdf.test.ts pins
 * them).
 */
export interface DocumentFonts {
  regular: Font;
  bold: Font;
}

const FILES = { regular: 'DejaVuSans.ttf', bold: 'DejaVuSans-Bold.ttf' } as const;

/**
 * documents/fonts, found from the source tree (documents/) or the build (dist/documents/, next to which the image
 * copies documents/fonts): the fonts are part of the repository, so every install renders the same glyphs.
 */
function fontDirectory(): string {
  const candidates = [path.join(__dirname, 'fonts'), path.join(__dirname, '..', '..', 'documents', 'fonts')];
  const found = candidates.find((dir) => existsSync(path.join(dir, FILES.regular)));
  if (!found)
    throw new Error(`the document fonts are missing: looked for ${FILES.regular} in ${candidates.join(', ')}`);
  return found;
}

let loaded: DocumentFonts | undefined;

function parse(file: string): Font {
  const font = create(readFileSync(file));
  if (!('layout' in font)) throw new Error(`${path.basename(file)} is a font collection, not one font`);
  return font;
}

/** Read and parsed once per process (or render thread). */
export function loadDocumentFonts(): DocumentFonts {
  if (!loaded) {
    const dir = fontDirectory();
    loaded = { regular: parse(path.join(dir, FILES.regular)), bold: parse(path.join(dir, FILES.bold)) };
  }
  return loaded;
}
