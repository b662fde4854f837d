import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The TrueType fonts embedded (subset) in every document: DejaVu Sans, vendored with its license. */
export interface DocumentFonts {
  regular: Buffer;
  bold: Buffer;
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

/** Read once per process (or render thread): about 1.4 MB, immutable. */
export function loadDocumentFonts(): DocumentFonts {
  if (!loaded) {
    const dir = fontDirectory();
    loaded = { regular: readFileSync(path.join(dir, FILES.regular)), bold: readFileSync(path.join(dir, FILES.bold)) };
  }
  return loaded;
}
